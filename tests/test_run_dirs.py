"""What a run leaves on disk: no secret in any of it, and a directory of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, TINY_RUN

QUICK = [*TINY_RUN, "callbacks.story_metrics.num_prompts=2"]
SECRETS = {
    "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
    "HF_TOKEN": "hf_SecretTokenThatMustNeverLeak",
    "MY_LAB_PASSWORD": "correct-horse-battery-staple",
}


def start_training(cwd: Path, *overrides: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "storygen.train", *QUICK, *overrides, f"paths.root_dir={cwd}"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_no_secret_from_the_environment_or_env_file_is_written_anywhere(tmp_path):
    # the key goes in through .env, as users set it; the server is unreachable, so W&B
    # writes its run offline, where the test can read it
    (tmp_path / ".env").write_text(
        "".join(f"{key}={value}\n" for key, value in SECRETS.items())
        + "WANDB_BASE_URL=http://127.0.0.1:9\n"
    )
    process = start_training(tmp_path, f"hydra.run.dir={tmp_path / 'run'}")
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-3000:]
    assert "logging offline" in output

    written = [path for path in (tmp_path / "run").rglob("*") if path.is_file()]
    assert any(path.suffix == ".ckpt" for path in written)
    assert any(path.suffix == ".wandb" for path in written)
    for path in written:
        content = path.read_bytes()
        for name, value in SECRETS.items():
            assert value.encode() not in content, f"{name} leaked into {path}"
    for value in SECRETS.values():
        assert value not in output


def test_the_env_file_is_ignored_by_git_and_every_variable_is_documented():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    read = set()
    for path in [*(ROOT / "storygen").rglob("*.py"), *(ROOT / "conf").rglob("*.yaml")]:
        text = path.read_text()
        read |= set(re.findall(r'environ(?:\.get)?\(\s*"([A-Z_]+)"', text))
        read |= set(re.findall(r"oc\.env:([A-Z_]+)", text))
    read -= {"LOCAL_RANK"}  # set by launchers, not by users
    assert read <= documented, read - documented


def test_two_runs_started_in_the_same_second_get_their_own_dirs(tmp_path):
    runs = [start_training(tmp_path, "train=false", "test=false", "logger=csv") for _ in range(2)]
    for process in runs:
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output[-3000:]
    run_dirs = list((tmp_path / "outputs" / "train").glob("*/*"))
    assert len(run_dirs) == 2
    assert all((run_dir / ".hydra" / "config.yaml").is_file() for run_dir in run_dirs)
