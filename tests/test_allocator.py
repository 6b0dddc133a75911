"""The entry points restart once with tcmalloc preloaded on CPU machines, and only once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storygen.environment.allocator import ENV_VAR, PRELOADED_VAR, find_tcmalloc, gpu_present

ROOT = Path(__file__).resolve().parent.parent
TCMALLOC = find_tcmalloc()
needs_tcmalloc = pytest.mark.skipif(
    TCMALLOC is None, reason="tcmalloc is not installed (apt-get install libtcmalloc-minimal4)"
)

# Counts its own starts in a file, asks for the allocator, then says what it runs on.
PROBE = """
import sys
from storygen.environment.allocator import preload_fast_allocator
with open(sys.argv[1], "a") as starts:
    starts.write("start\\n")
preload_fast_allocator()
print("tcmalloc" in open("/proc/self/maps").read())
"""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", ENV_VAR, PRELOADED_VAR)}
    # `auto` leaves GPU machines alone; there, check the mechanism by asking for it
    forced = {ENV_VAR: "tcmalloc"} if gpu_present() else {}
    return env | {"PYTHONPATH": str(ROOT)} | forced | extra


def run_probe(tmp_path: Path, **extra: str) -> tuple[subprocess.CompletedProcess, int]:
    starts = tmp_path / "starts.txt"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(starts)],
        env=clean_env(**extra),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, len(starts.read_text().splitlines()) if starts.exists() else 0


@needs_tcmalloc
def test_tcmalloc_is_found_for_this_machine():
    """Debian's libtcmalloc-minimal4 lives in a multiarch dir that torch's own launcher misses."""
    assert Path(TCMALLOC).is_file() and Path(TCMALLOC).name.startswith("libtcmalloc")


@needs_tcmalloc
def test_a_cpu_run_restarts_once_with_tcmalloc(tmp_path):
    result, starts = run_probe(tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True"]
    assert starts == 2  # the start, and one restart: the preloaded child does not exec again


@needs_tcmalloc
def test_system_turns_it_off(tmp_path):
    result, starts = run_probe(tmp_path, **{ENV_VAR: "system"})
    assert result.stdout.split() == ["False"] and starts == 1


@needs_tcmalloc
def test_an_allocator_the_user_preloaded_is_kept(tmp_path):
    result, starts = run_probe(tmp_path, LD_PRELOAD=TCMALLOC)
    assert result.stdout.split() == ["True"] and starts == 1


def test_a_bad_choice_is_one_error_line(tmp_path):
    result, _ = run_probe(tmp_path, **{ENV_VAR: "tcmaloc"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {ENV_VAR}='tcmaloc' is not an allocator choice; use one of auto, tcmalloc, system"
    ]


@needs_tcmalloc
@pytest.mark.parametrize(
    "entry_point", ["storygen.train", "storygen.evaluate", "storygen.generate"]
)
def test_entry_points_restart_before_importing_torch(entry_point):
    """The dynamic loader's log: tcmalloc is loaded, and libtorch only after the restart
    (stopped as soon as tcmalloc shows, so this costs no torch import)."""
    process = subprocess.Popen(
        [sys.executable, "-m", entry_point, "--help"],
        env=clean_env(LD_DEBUG="libs"),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen_torch = False
    try:
        for line in process.stderr:
            if "calling init:" in line and "tcmalloc" in line:
                break
            seen_torch |= "libtorch" in line
        else:
            pytest.fail(f"{entry_point} ran without loading tcmalloc")
    finally:
        process.kill()
        process.wait()
    assert not seen_torch, f"{entry_point} imported torch before restarting with tcmalloc"
