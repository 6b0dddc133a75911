"""Hydra's sweep syntax as Optuna distributions: `interval(1e-5, 1e-3)`, `tag(log, ...)`,
`choice(8, 16)`, `range(1, 5)`; plain `key=value` overrides pass to every trial unchanged."""

from __future__ import annotations

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from storygen.errors import StorygenError


def distribution(override: Override) -> BaseDistribution:
    value = override.value()
    if override.is_interval_sweep():
        log = "log" in value.tags
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    ints = override.is_range_sweep() and all(
        isinstance(v, int) for v in (value.start, value.stop, value.step)
    )
    if ints and not value.shuffle:
        # Hydra's range stops before `stop`, like Python's
        last = value.start + (value.stop - 1 - value.start) // value.step * value.step
        return IntDistribution(value.start, last, step=value.step)
    choices = list(override.sweep_iterator(transformer=Transformer.encode))
    return CategoricalDistribution(choices)


def parse_search_space(overrides: list[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """The searched keys with their distributions, and the fixed overrides every trial gets."""
    space: dict[str, BaseDistribution] = {}
    fixed: list[str] = []
    for text, override in zip(overrides, OverridesParser.create().parse_overrides(overrides)):
        if not override.is_sweep_override():
            fixed.append(text)
            continue
        key = override.get_key_element()
        if key.startswith("hydra."):
            raise StorygenError(f"{text}: an Optuna search cannot sweep Hydra's own settings.")
        space[key] = distribution(override)
    return space, fixed


def as_override(key: str, value: object) -> str:
    """`key=value` as Hydra parses it back (strings quoted when they need it)."""
    if isinstance(value, str) and any(c in value for c in " ,()[]{}'\"=:"):
        return f"{key}='{value}'"
    return f"{key}={value}"
