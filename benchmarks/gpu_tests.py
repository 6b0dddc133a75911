"""The tests whose outcome depends on CUDA, run on the GPU machine by benchmarks/gpu_check.sh;
one JSON line of their outcomes.

    python benchmarks/gpu_tests.py --jsonl $OUT/1_results.jsonl --junit PATH -- TEST_PATHS...

pytest runs in this one process (`-o addopts=`: no xdist, whose `--dist loadgroup` the
project's conftest refuses under pytest >= 9.2, a version the GPU image may have), its JUnit XML
read back for each test's outcome; a failure's message is kept, cut to 500 characters.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import xml.etree.ElementTree as ET


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jsonl", required=True)
    parser.add_argument("--junit", required=True)
    parser.add_argument("tests", nargs="+")
    args = parser.parse_args()
    command = [sys.executable, "-m", "pytest", "-o", "addopts=", "-p", "no:cacheprovider", "-q"]
    command += ["-rfEs", f"--junitxml={args.junit}", *args.tests]
    rc = subprocess.run(command).returncode
    outcomes: dict[str, str] = {}
    failures: dict[str, str] = {}
    try:
        cases = ET.parse(args.junit).getroot().iter("testcase")
    except (OSError, ET.ParseError):
        cases = []
    for case in cases:
        name = f"{case.get('classname')}::{case.get('name')}"
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = child.tag
                failures[name] = (child.get("message") or child.text or "")[:500]
        outcomes[name] = outcome
    counts = {kind: sum(o == kind for o in outcomes.values()) for kind in set(outcomes.values())}
    line = {"step": "cuda_tests", "pytest_rc": rc, "counts": counts, "outcomes": outcomes}
    line["messages"] = failures
    with open(args.jsonl, "a") as out:
        out.write(json.dumps(line) + "\n")
    print(json.dumps({"pytest_rc": rc, "counts": counts}))
    sys.exit(rc)


if __name__ == "__main__":
    main()
