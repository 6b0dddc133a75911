"""Which ROUGE convention made each run's ROUGE keys, and the check that one report column
never holds numbers of two conventions.

A run's config names its conventions (`rouge: {name: {use_stemmer, lsum_split}}`); a run from
before conventions were configurable logged storygen's, which it then was.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storygen.errors import StorygenError
from storygen.metrics.rouge import STORYGEN, as_conventions

Conventions = dict[str, dict[str, object]]
"""convention name -> its settings (use_stemmer, lsum_split)"""


def conventions_of(config: Mapping[str, Any] | None) -> Conventions:
    """The ROUGE conventions a run's config names; storygen's where it names none."""
    rouge = (config or {}).get("rouge")
    if rouge is None:
        return {STORYGEN.name: STORYGEN.settings()}
    return {c.name: c.settings() for c in as_conventions(rouge)}


def check_one_convention_per_column(runs: list) -> None:
    """Refuse runs whose same-named ROUGE keys were made under different settings."""
    seen: dict[str, tuple[str, dict[str, object]]] = {}
    for run in runs:
        for name, settings in run.rouge.items():
            first = seen.setdefault(name, (run.name, settings))
            if first[1] != settings:
                raise StorygenError(
                    f"runs {first[0]} and {run.name} logged ROUGE convention {name!r} with "
                    f"different settings ({first[1]} vs {settings}), so one column would mix "
                    "two metrics; compare them in separate reports, or rescore one with "
                    "`python -m storygen.evaluate` under the other's settings."
                )
