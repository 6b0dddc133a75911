"""A dependency outside storygen's declared range is one line naming it, before it fails
somewhere deep inside a run (an import error in peft, a missing method in transformers).

The ranges are read from storygen's own install metadata, written from pyproject.toml, so the
check cannot disagree with what pip was told. A tree used from PYTHONPATH without an install
(the GPU check) has no metadata, and nothing is checked.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, requires, version

from packaging.requirements import Requirement


def version_problems(distribution: str = "storygen") -> list[str]:
    """One line per required package that is missing or outside its declared range."""
    try:
        declared = requires(distribution) or []
    except PackageNotFoundError:
        return []
    problems = []
    for requirement in map(Requirement, declared):
        if requirement.marker is not None:  # an extra's (`extra == "sweep"`): checked by use
            continue
        fix = f"pip install '{requirement}'"
        try:
            found = version(requirement.name)
        except PackageNotFoundError:
            problems.append(f"{requirement.name} is not installed; storygen needs it ({fix})")
            continue
        if not requirement.specifier.contains(found, prereleases=True):
            problems.append(
                f"{requirement.name} {found} is installed; storygen needs "
                f"{requirement.name}{requirement.specifier} ({fix})"
            )
    return problems


def exit_on_unsupported_versions() -> None:
    """Entry points call this first: `error: <package> <found> ...; needs <range>`, exit 2."""
    problems = version_problems()
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    if problems:
        sys.exit(2)
