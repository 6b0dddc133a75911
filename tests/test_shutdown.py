"""The entry points' quicker exit (storygen/environment/shutdown.py) still finalizes what the
run left behind."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = """
import gc, sys
from storygen.environment.shutdown import exit_quickly

exit_quickly()

class Garbage:
    def __del__(self):
        with open(sys.argv[1], "w") as handle:
            handle.write("finalized")

cycle = Garbage()
cycle.itself = cycle  # only a garbage collection frees it
del cycle
gc.disable()
"""


def test_garbage_left_at_exit_is_still_finalized(tmp_path):
    marker = tmp_path / "marker.txt"
    subprocess.run(
        [sys.executable, "-c", SCRIPT, str(marker)],
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert marker.read_text() == "finalized"
