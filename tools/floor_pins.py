"""Print every direct dependency pinned exactly at the floor pyproject.toml declares.

CI's floors leg installs these (`pip install -r <(python tools/floor_pins.py dev sweep)`), as
Lightning's "oldest" rows do, so a declared floor that does not work fails CI. A requirement
without a `>=` floor is printed as declared.

    python tools/floor_pins.py [EXTRA ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import tomllib  # Python 3.11+: CI runs this with the main leg's interpreter
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def floor_pin(requirement: Requirement) -> str:
    """`torch>=2.6` -> `torch==2.6`; extras and markers kept."""
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    name = requirement.name + extras
    floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    pin = f"{name}=={floors[0]}" if floors else f"{name}{requirement.specifier}"
    return pin + (f"; {requirement.marker}" if requirement.marker else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("extras", nargs="*", help="optional-dependency groups to include")
    extras = parser.parse_args().extras
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    groups = project.get("optional-dependencies", {})
    unknown = sorted(set(extras) - set(groups))
    if unknown:
        sys.exit(f"error: no extra {unknown} in pyproject.toml; it has {sorted(groups)}")
    for line in project["dependencies"] + [r for extra in extras for r in groups[extra]]:
        print(floor_pin(Requirement(line)))


if __name__ == "__main__":
    main()
