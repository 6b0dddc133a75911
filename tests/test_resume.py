"""Nothing computed is lost: exact resume, clean interruption, atomic checkpoints, NaN stop.

The resume matrix compares each interrupted-and-resumed run with the same run trained without
a break: final weights and optimizer state to 1e-6, `last.ckpt` at the final step, and every
step's `train/loss` logged once (CSV, and W&B where the case logs there).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch import Callback
from omegaconf import open_dict

from storygen.errors import StorygenError
from storygen.train import train
from tests.conftest import ROOT, TINY_RUN, compose_config, run_module
from tests.wandb_records import wandb_history

# 48 stories in batches of 8: 6 steps an epoch, 12 in the two epochs every case trains. Cut at
# 64 tokens (half the time a step takes at 128): what resumes does not depend on the length;
# the cases about lengths (length groups, packing) train the tiny run's 128.
RESUMABLE_RUN = [
    *TINY_RUN,
    "data.max_length=64",
    "logger=csv",
    "trainer.max_epochs=2",
    "callbacks.story_metrics.num_prompts=0",
    # dropout on, so the random generators matter
    "+model.backbone.architecture.resid_pdrop=0.1",
]


class Interrupt(Callback):
    """Deliver a real signal to this process during its `at_batch`-th training batch (counted
    from this process's start, from 0), as a preempting cluster (SIGTERM) or a user (Ctrl-C)
    does. Notes the global step of every batch this process trains (class-wide: the config
    builds the instance), and fails a run that spins through empty epochs."""

    trained: list[int] = []
    stories: list[list[int]] = []  # each batch's stories, by the sum of their token ids

    def __init__(self, at_batch: int | None = None, signum: int = signal.SIGTERM) -> None:
        self.at_batch = at_batch
        self.signum = signum

    def on_train_batch_start(self, trainer, pl_module, batch, *args) -> None:
        if len(Interrupt.trained) == self.at_batch:
            signal.raise_signal(self.signum)
        Interrupt.trained.append(trainer.global_step)
        Interrupt.stories.append(batch["input_ids"].sum(dim=1).tolist())

    def on_train_epoch_start(self, trainer, *args) -> None:
        if trainer.current_epoch > 4:
            raise RuntimeError(f"epoch {trainer.current_epoch} of a run set to train 2")


def run(
    run_dir: Path, *overrides: str, at_batch: int | None = None, signum: int = signal.SIGTERM
) -> list[int]:
    """Train; the global step of each batch this call trained."""
    cfg = compose_config([*RESUMABLE_RUN, *overrides], run_dir)
    with open_dict(cfg):
        cfg.test = False
        cfg.export = False
        cfg.callbacks.interrupt = {
            "_target_": f"{__name__}.Interrupt",
            "at_batch": at_batch,
            "signum": int(signum),
        }
    Interrupt.trained, Interrupt.stories = [], []
    try:
        train(cfg)
    finally:
        trained = list(Interrupt.trained)
    return trained


def logged_losses(run_dir: Path) -> list[tuple[int, float]]:
    with (run_dir / "csv" / "metrics.csv").open() as handle:
        return [
            (int(row["step"]), float(row["train/loss"]))
            for row in csv.DictReader(handle)
            if row.get("train/loss")
        ]


def last_checkpoint(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=False)


def largest_difference(expected: object, actual: object) -> float:
    """The largest absolute difference between two nests of tensors and numbers (inf when
    their shapes or keys differ)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict) or expected.keys() != actual.keys():
            return float("inf")
        return max((largest_difference(expected[k], actual[k]) for k in expected), default=0.0)
    if isinstance(expected, list | tuple):
        if not isinstance(actual, list | tuple) or len(expected) != len(actual):
            return float("inf")
        return max((largest_difference(e, a) for e, a in zip(expected, actual)), default=0.0)
    if isinstance(expected, torch.Tensor):
        if not isinstance(actual, torch.Tensor) or expected.shape != actual.shape:
            return float("inf")
        return (expected.double() - actual.double()).abs().max().item() if expected.numel() else 0
    if isinstance(expected, int | float):
        return abs(expected - actual) if isinstance(actual, int | float) else float("inf")
    return 0.0 if expected == actual else float("inf")


def wandb_losses(run_dir: Path) -> tuple[set[str], list[tuple[int, float]]]:
    """The W&B run ids under a run dir, and every `train/loss` logged there by global step."""
    files = sorted(run_dir.glob("wandb/*run-*/run-*.wandb"), key=lambda p: p.stat().st_mtime)
    ids, losses = set(), []
    for path in files:
        ids.add(path.stem.removeprefix("run-"))
        losses += [
            (int(row["trainer/global_step"]), float(row["train/loss"]))
            for row in wandb_history(path)
            if "train/loss" in row
        ]
    return ids, losses


@dataclass(frozen=True)
class Case:
    """A run (its overrides) and how it is interrupted: a signal during its `at_batch`-th
    batch, or a first run of `first_epochs` epochs continued for the run's two."""

    overrides: tuple[str, ...] = ()
    at_batch: int | None = None
    signum: int = signal.SIGTERM
    first_epochs: int | None = None
    stopped_at: int | None = None  # the global step the interruption must save
    wandb: bool = False


STREAM = ("data.streaming=true", "data.shuffle_buffer=1", "trainer.max_steps=12")
ACCUMULATE = ("trainer.accumulate_grad_batches=2",)
AS_LOADED = ("data.tokenize_train=as_loaded", "data.num_workers=2")
CASES = {
    "mid_epoch": Case(at_batch=8, stopped_at=9, wandb=True),
    "epoch_boundary": Case(first_epochs=1, stopped_at=6),
    # stopped in the epoch's last batch: the resumed run starts the next epoch afresh
    "last_batch": Case(at_batch=5, stopped_at=6),
    "last_batch_max_steps": Case(("trainer.max_steps=12",), at_batch=5, stopped_at=6),
    # batch 4 is the first micro-batch of step 2: both signals wait for step 2 to finish
    "accumulate_sigterm": Case(ACCUMULATE, at_batch=4, stopped_at=3),
    "accumulate_ctrl_c": Case(ACCUMULATE, at_batch=4, signum=signal.SIGINT, stopped_at=3),
    "group_by_length": Case(
        ("data.group_by_length=true", "data.max_length=128"), at_batch=8, stopped_at=9
    ),
    "packing": Case(
        ("data.packing=true", "data.batch_size=4", "data.max_length=128"), at_batch=6, stopped_at=7
    ),
    # validation after every 2nd batch: the stop after batch 3 waits for its validation
    "mid_epoch_validation": Case(("trainer.val_check_interval=2",), at_batch=3, stopped_at=4),
    "lora_4bit": Case(
        (
            "model=mistral_tiny_lora",
            "~model.backbone.architecture.resid_pdrop",
            "+model.backbone.architecture.attention_dropout=0.1",
        ),
        at_batch=8,
        stopped_at=9,
    ),
    # train tokenized by two loader workers as they load its batches
    "tokenized_as_loaded": Case(AS_LOADED, at_batch=8, stopped_at=9),
    "stream_mid_epoch": Case(STREAM, at_batch=8, stopped_at=9),
    # stopped in the stream's last batch: the next epoch must start a new pass, not end at once
    "stream_last_batch": Case(STREAM, at_batch=5, stopped_at=6),
    # the same with no epoch limit: the resumed run spun through empty epochs (a hang)
    "stream_last_batch_no_epoch_limit": Case(
        (*STREAM, "trainer.max_epochs=-1"), at_batch=5, stopped_at=6
    ),
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One uninterrupted run per distinct set of overrides, shared by the cases that use it."""
    runs: dict[tuple[str, ...], Path] = {}

    def get(overrides: tuple[str, ...]) -> Path:
        if overrides not in runs:
            run_dir = tmp_path_factory.mktemp("uninterrupted")
            run(run_dir, *overrides)
            runs[overrides] = run_dir
        return runs[overrides]

    return get


# the cases CI also runs at the declared floors and on the GPU image's versions: mid-epoch, the
# restart Lightning makes past an ended epoch (its private loop names), a 4-bit LoRA run
SMOKE_CASES = {"mid_epoch", "last_batch_max_steps", "lora_4bit"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.smoke) if n in SMOKE_CASES else n for n in CASES]
)
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(name, uninterrupted, tmp_path):
    case = CASES[name]
    straight = uninterrupted(case.overrides)
    resumed_dir = tmp_path / name
    logger = ("logger=default",) if case.wandb else ()
    if case.first_epochs:
        run(resumed_dir, *case.overrides, *logger, f"trainer.max_epochs={case.first_epochs}")
    else:
        with pytest.raises(SystemExit):  # Lightning's clean-exit SIGTERMException
            run(resumed_dir, *case.overrides, *logger, at_batch=case.at_batch, signum=case.signum)
        record = json.loads((resumed_dir / "run.json").read_text())
        assert record["status"] == "interrupted"
    assert last_checkpoint(resumed_dir)["global_step"] == case.stopped_at
    trained = run(resumed_dir, *case.overrides, *logger, "ckpt_path=last")
    assert trained and trained[0] == case.stopped_at

    expected, actual = last_checkpoint(straight), last_checkpoint(resumed_dir)
    assert actual["global_step"] == expected["global_step"]
    assert sorted(p.name for p in (resumed_dir / "checkpoints").glob("last*")) == ["last.ckpt"]
    assert largest_difference(expected["state_dict"], actual["state_dict"]) <= 1e-6
    assert largest_difference(expected["optimizer_states"], actual["optimizer_states"]) <= 1e-6
    assert largest_difference(expected["lr_schedulers"], actual["lr_schedulers"]) <= 1e-6
    # every step logged once, with the uninterrupted run's loss
    losses = logged_losses(resumed_dir)
    assert [step for step, _ in losses] == [step for step, _ in logged_losses(straight)]
    assert largest_difference(logged_losses(straight), losses) <= 1e-6
    if case.wandb:
        ids, wandb_logged = wandb_losses(resumed_dir)
        assert len(ids) == 1  # the resumed run continued the W&B run
        assert largest_difference(losses, wandb_logged) <= 1e-5


def test_each_epoch_of_a_stream_has_its_own_order(tmp_path):
    run(tmp_path, "data.streaming=true", "data.shuffle_buffer=8", "trainer.max_steps=12")
    first, second = Interrupt.stories[:6], Interrupt.stories[6:]
    assert sorted(sum(first, [])) == sorted(sum(second, []))  # the same stories
    assert first != second  # in a new order


def test_sigterm_to_a_training_process_saves_and_the_next_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = [
        *RESUMABLE_RUN,
        "trainer.max_steps=400",
        "trainer.max_epochs=-1",
        "data.max_train_samples=240",
        f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={run_dir}",
        "test=false",
    ]
    command = [sys.executable, "-m", "storygen.train", *args]
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

    # the same command again (forked: receiving the signal was the fresh process's part)
    resumed = run_module(
        "storygen.train",
        *args,
        "ckpt_path=last",
        "trainer.max_steps=" + str(stopped_at["global_step"] + 3),
        cwd=tmp_path,
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


class PoisonWeightsAtStep(Callback):
    """An overflow at a known step: weights become NaN, so the loss of that step and every
    weight after its update are NaN."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.step:
            with torch.no_grad():
                for parameter in pl_module.backbone.parameters():
                    parameter.view(-1)[0] = float("nan")


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    cfg = compose_config(
        [
            *RESUMABLE_RUN,
            "trainer.val_check_interval=2",  # checkpoints at steps 2, 4, 6, ...
            "trainer.log_every_n_steps=10",  # so only the save at step 6 checks the losses
        ],
        tmp_path,
    )
    with open_dict(cfg):
        cfg.test = False
        cfg.export = False
        cfg.callbacks.poison = {"_target_": f"{__name__}.PoisonWeightsAtStep", "step": 4}
    with pytest.raises(StorygenError, match="the training loss became nan at step 4"):
        train(cfg)
    diagnosis = sorted((tmp_path / "nonfinite").glob("step_*.pt"))
    assert [path.name for path in diagnosis] == ["step_000004.pt"]
    saved = torch.load(diagnosis[0], weights_only=False)
    assert not torch.isfinite(saved["loss"]) and "input_ids" in saved["batch"]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"
    # the checkpoint of step 4 (before the NaN step) is the last one, and it is whole
    assert last_checkpoint(tmp_path)["global_step"] == 4
    checkpoints = list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert checkpoints
    for checkpoint in checkpoints:
        state = torch.load(checkpoint, weights_only=False)
        assert state["global_step"] <= 4
        assert all(torch.isfinite(tensor).all() for tensor in state["state_dict"].values())


def test_train_tokenized_as_loaded_trains_as_train_tokenized_ahead(uninterrupted):
    ahead, as_loaded = uninterrupted(()), uninterrupted(AS_LOADED)
    expected, actual = last_checkpoint(ahead), last_checkpoint(as_loaded)
    assert largest_difference(expected["state_dict"], actual["state_dict"]) <= 1e-6
    assert largest_difference(logged_losses(ahead), logged_losses(as_loaded)) <= 1e-6
