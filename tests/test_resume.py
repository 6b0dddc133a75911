"""Nothing computed is lost: exact resume, clean interruption, atomic checkpoints, NaN stop."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback
from omegaconf import open_dict

from storygen.errors import StorygenError
from storygen.train import train
from tests.conftest import ROOT, TINY_RUN, compose_config

# 48 stories in batches of 8: 6 steps an epoch, so 9 steps cross an epoch boundary.
RESUMABLE_RUN = [
    *TINY_RUN,
    "logger=csv",
    "trainer.max_steps=9",
    "trainer.max_epochs=-1",
    "callbacks.story_metrics.num_prompts=0",
    # dropout on, so the random generators matter
    "+model.backbone.architecture.resid_pdrop=0.1",
]


class SigtermAtStep(Callback):
    """Deliver a real SIGTERM to this process during a given step, as a preempting cluster
    does, and note which steps this process trained (class-wide: config builds the instance)."""

    trained: list[int] = []

    def __init__(self, step: int | None = None) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, *args) -> None:
        SigtermAtStep.trained.append(trainer.global_step)
        if trainer.global_step == self.step:
            signal.raise_signal(signal.SIGTERM)


def run(tmp_path: Path, *overrides: str, kill_at: int | None = None) -> list[int]:
    """Train; the steps this call trained."""
    cfg = compose_config([*RESUMABLE_RUN, *overrides], tmp_path)
    with open_dict(cfg):
        cfg.test = False
        cfg.export = False
        cfg.callbacks.kill = {"_target_": f"{__name__}.SigtermAtStep", "step": kill_at}
    SigtermAtStep.trained = []
    try:
        train(cfg)
    finally:
        trained = list(SigtermAtStep.trained)
    return trained


def logged_losses(run_dir: Path) -> list[tuple[int, float]]:
    with (run_dir / "csv" / "metrics.csv").open() as handle:
        return [
            (int(row["step"]), float(row["train/loss"]))
            for row in csv.DictReader(handle)
            if row.get("train/loss")
        ]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]


def test_killed_and_resumed_training_ends_with_identical_weights_and_losses(tmp_path):
    assert run(tmp_path / "straight") == list(range(9))
    with pytest.raises(SystemExit):  # Lightning's clean-exit SIGTERMException
        run(tmp_path / "resumed", kill_at=4)
    record = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert record["status"] == "interrupted"
    assert len(logged_losses(tmp_path / "resumed")) == 5  # steps 0-4; killed during step 4

    assert run(tmp_path / "resumed", "ckpt_path=last") == [5, 6, 7, 8]

    straight, resumed = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert straight.keys() == resumed.keys()
    largest = max((straight[k] - resumed[k]).abs().max().item() for k in straight)
    assert largest <= 1e-6
    # the CSV kept the losses logged before the kill, and the resumed ones follow them
    assert logged_losses(tmp_path / "resumed") == logged_losses(tmp_path / "straight")


def test_sigterm_to_a_training_process_saves_and_the_next_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "storygen.train",
        *RESUMABLE_RUN,
        "trainer.max_steps=400",
        "data.max_train_samples=240",
        f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={run_dir}",
        "test=false",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    output = tmp_path / "output.txt"
    with output.open("w") as sink:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=sink, stderr=sink)
        metrics = run_dir / "csv" / "metrics.csv"
        deadline = time.monotonic() + 300
        while not (metrics.exists() and len(metrics.read_text().splitlines()) > 3):
            assert process.poll() is None and time.monotonic() < deadline, output.read_text()
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    log = output.read_text()
    assert process.returncode == 0, log[-3000:]
    assert "Stopped by a signal at step" in log and "Resume with: python -m storygen.train" in log
    stopped_at = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert 0 < stopped_at["global_step"] < 400
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"

    resumed = subprocess.run(
        [*command, "ckpt_path=last", "trainer.max_steps=" + str(stopped_at["global_step"] + 3)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Restoring states from the checkpoint" in resumed.stderr + resumed.stdout
    final = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["global_step"] == stopped_at["global_step"] + 3
    assert json.loads((run_dir / "run.json").read_text())["status"] == "completed"


def test_a_crash_while_writing_a_checkpoint_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = TorchCheckpointIO()
    io.save_checkpoint({"step": 1, "weights": torch.ones(1000)}, path)

    import fsspec.implementations.local as local

    def write_half_then_crash(self, data):
        self.f.write(data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(local.LocalFileOpener, "write", write_half_then_crash, raising=False)
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"step": 2, "weights": torch.zeros(1000)}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["step"] == 1


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    # a learning rate of 1e30 sends the weights, then the loss, to inf/NaN within a few steps
    with pytest.raises(StorygenError, match="the training loss became nan at step"):
        run(
            tmp_path,
            "model.optimizer.lr=1e30",
            "trainer.gradient_clip_val=null",
            "trainer.log_every_n_steps=2",
        )
    diagnosis = sorted((tmp_path / "nonfinite").glob("step_*.pt"))
    assert len(diagnosis) == 1
    saved = torch.load(diagnosis[0], weights_only=False)
    assert not torch.isfinite(saved["loss"]) and "input_ids" in saved["batch"]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"
    for checkpoint in (tmp_path / "checkpoints").glob("*.ckpt"):
        state = torch.load(checkpoint, weights_only=False)["state_dict"]
        assert all(torch.isfinite(tensor).all() for tensor in state.values())
