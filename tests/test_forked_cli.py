"""The suite's forked commands (tests/forked_cli.py) behave as `python -m` does: the same
output, exit status and config, `.env` read from the command's own directory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT, run_module

COMMANDS = {
    # the config as the command resolves it, with a value from the cwd's .env
    "config": ("storygen.train", "--cfg", "job", "--resolve", "model=gpt2_tiny", "logger=wandb"),
    "storygen-error": ("storygen.generate", "ckpt_path=/no/such.ckpt", "prompt= "),
}


@pytest.mark.parametrize("name", COMMANDS)
def test_a_forked_command_gives_what_a_fresh_process_gives(name, tmp_path):
    module, *args = COMMANDS[name]
    (tmp_path / ".env").write_text("WANDB_PROJECT=from-the-env-file\n")
    fresh = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    forked = run_module(module, *args, cwd=tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        fresh.returncode,
        fresh.stdout,
        fresh.stderr,
    )
    assert fresh.returncode == {"config": 0, "storygen-error": 2}[name]
    if name == "config" and "WANDB_PROJECT" not in os.environ:
        assert "project: from-the-env-file" in fresh.stdout
