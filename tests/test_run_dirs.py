"""What a run leaves on disk: no secret in any of it, and a directory of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from tests.conftest import ROOT, TINY_RUN, compose_config
from tests.wandb_records import wandb_config, wandb_records

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
    # the keys go in through .env, as users set them; the server is unreachable, so W&B
    # writes its run offline, where the test can read it
    (tmp_path / ".env").write_text(
        "".join(f"{key}={value}\n" for key, value in SECRETS.items())
        + "WANDB_BASE_URL=http://127.0.0.1:9\n"
    )
    # and two reach the config itself, through overrides that read the environment, so the
    # masking of the logged config has secrets to mask
    process = start_training(
        tmp_path,
        f"hydra.run.dir={tmp_path / 'run'}",
        "+lab.password=${oc.env:MY_LAB_PASSWORD}",
        "+lab.wandb_key=${oc.env:WANDB_API_KEY}",
    )
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-3000:]
    assert "logging offline" in output

    run_dir = tmp_path / "run"
    written = [path for path in run_dir.rglob("*") if path.is_file()]
    assert any(path.suffix == ".ckpt" for path in written)
    assert (run_dir / "run.json").is_file()
    for path in written:  # checkpoints, W&B files, CSV hparams, run.json, .hydra, logs
        content = path.read_bytes()
        for name, value in SECRETS.items():
            assert value.encode() not in content, f"{name} leaked into {path}"
    for value in SECRETS.values():
        assert value not in output

    # the config values were there and were masked, in W&B's config and the CSV's hparams
    logged = wandb_config(next(run_dir.glob("wandb/offline-run-*/run-*.wandb")))
    assert logged["lab"] == {"password": "***", "wandb_key": "***"}
    hparams = yaml.safe_load((run_dir / "csv" / "hparams.yaml").read_text())
    assert hparams["lab"] == {"password": "***", "wandb_key": "***"}
    # the W&B run's name, from the overrides
    assert "+lab.password=***" in next(
        record.run.display_name
        for record in wandb_records(next(run_dir.glob("wandb/offline-run-*/run-*.wandb")))
        if record.WhichOneof("record_type") == "run"
    )
    # Hydra's own record of the run keeps the interpolation, not its value
    saved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "${oc.env:MY_LAB_PASSWORD}" in saved


def test_the_env_file_is_ignored_by_git_and_every_variable_is_documented():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.M))
    read = set()
    for path in [*(ROOT / "storygen").rglob("*.py"), *(ROOT / "conf").rglob("*.yaml")]:
        text = path.read_text()
        read |= set(re.findall(r'environ(?:\.get)?\(\s*"([A-Z_]+)"', text))
        read |= set(re.findall(r"oc\.env:([A-Z_]+)", text))
    # set by launchers (DDP, SLURM, submitit) and the dynamic loader, not by users
    read -= {"LOCAL_RANK", "LD_PRELOAD", "SLURM_RESTART_COUNT", "SUBMITIT_EXECUTOR"}
    assert read <= documented, read - documented


def test_two_runs_started_in_the_same_second_get_their_own_dirs(tmp_path):
    """Run and sweep dirs carry microseconds: two commands started in the same second (a
    script, a job array) never share a dir."""
    first, second = (compose_config(["logger=csv"], tmp_path) for _ in range(2))
    for key in ("run.dir", "sweep.dir"):
        dirs = [OmegaConf.select(cfg.hydra, key) for cfg in (first, second)]
        assert dirs[0] != dirs[1], key
        for run_dir in dirs:
            assert re.fullmatch(r".*/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}", run_dir), run_dir
