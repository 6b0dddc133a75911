"""Callbacks that keep a long run's work safe: clean interruption, exact resume, NaN guard.

Checkpoints themselves are written atomically by Lightning (to a temporary file, then moved),
so a crash mid-write leaves the previous `last.ckpt` whole.
"""

from __future__ import annotations

import logging
import random
import signal
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from storygen.errors import StorygenError

log = logging.getLogger(__name__)


def last_checkpoint_path(trainer: Trainer) -> Path:
    directory = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
    return Path(directory or trainer.default_root_dir) / "last.ckpt"


class InterruptionCheckpoint(Callback):
    """`last.ckpt` holds the latest step whenever training stops: at its end (also mid-epoch,
    at `trainer.max_steps`), on SIGTERM (a preempted job) or on a first Ctrl-C.

    Lightning stops at the next step boundary on SIGTERM (raising its clean-exit
    SIGTERMException) but saves nothing; a Ctrl-C would land mid-step. Here Ctrl-C also waits
    for the step boundary, and both save there, so `ckpt_path=last` resumes exactly. A second
    Ctrl-C stops at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self.saved_step = -1
        self._previous_sigint: Any = None

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.requested = False
        self._previous_sigint = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: stopping after this step with a checkpoint (again to stop now)")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        stop = self.requested
        if trainer.world_size > 1:  # every rank must stop (and save) together
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            raise SIGTERMException

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException):
        if isinstance(exception, SIGTERMException) and self.saved_step != trainer.global_step:
            path = last_checkpoint_path(trainer)
            trainer.save_checkpoint(path)
            log.warning("Stopped by a signal at step %d; saved %s", trainer.global_step, path)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict):
        self.saved_step = trainer.global_step

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.checkpoint_callback is not None and self.saved_step != trainer.global_step:
            trainer.save_checkpoint(last_checkpoint_path(trainer))

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None


class RNGStateCheckpoint(Callback):
    """Save every random generator's state with each checkpoint and restore it just before
    the first step after a resume, so dropout draws continue exactly where they stopped."""

    def __init__(self) -> None:
        self.pending: dict | None = None

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict):
        # tensors and plain numbers only: checkpoints load with torch.load(weights_only=True)
        _, keys, position, has_gauss, cached_gauss = np.random.get_state()
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss],
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict):
        self.pending = checkpoint.get("rng_states")

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if self.pending is None:
            return
        torch.set_rng_state(self.pending["torch"])
        if self.pending["cuda"]:
            torch.cuda.set_rng_state_all(self.pending["cuda"])
        keys, position, has_gauss, cached_gaussian = self.pending["numpy"]
        np.random.set_state(
            ("MT19937", keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian)
        )
        random.setstate(self.pending["python"])
        self.pending = None


class NonFiniteLossGuard(Callback):
    """Stop on a NaN or infinite training loss, before it reaches a checkpoint.

    Losses are checked on the device as they come and read back only every
    `check_every_n_steps` steps and before any checkpoint is written, so training does not
    wait on the host each step. The first bad step's batch, its loss and the learning
    rates are saved to `<run>/nonfinite/step_<n>.pt`; the last good checkpoint stays.
    """

    def __init__(self, check_every_n_steps: int = 10, output_dir: str | None = None) -> None:
        self.check_every_n_steps = check_every_n_steps
        self.output_dir = Path(output_dir) if output_dir else None
        self._recent: list[tuple[int, torch.Tensor, dict]] = []

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: dict, *args
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._recent.append((trainer.global_step, loss.detach(), batch))
        if len(self._recent) >= self.check_every_n_steps:
            self.check(trainer)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict):
        self.check(trainer)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: Trainer) -> None:
        recent, self._recent = self._recent, []
        if not recent:
            return
        finite = torch.isfinite(torch.stack([loss for _, loss, _ in recent])).tolist()
        if all(finite):
            return
        step, loss, batch = recent[finite.index(False)]
        saved = self._save_diagnosis(trainer, step, loss, batch)
        raise StorygenError(
            f"the training loss became {loss.item()} at step {step}; the batch and learning "
            f"rates are saved in {saved}, and the last good checkpoint "
            f"({last_checkpoint_path(trainer)}) is kept. Lower model.optimizer.lr, keep "
            "trainer.gradient_clip_val set, or train in fp32 (trainer.precision=32-true)."
        )

    def _save_diagnosis(self, trainer: Trainer, step: int, loss: torch.Tensor, batch: dict):
        directory = self.output_dir or Path(trainer.default_root_dir) / "nonfinite"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"step_{step:06d}.pt"
        learning_rates = [group["lr"] for opt in trainer.optimizers for group in opt.param_groups]
        torch.save(
            {
                "step": step,
                "loss": loss.cpu(),
                "batch": {key: value.cpu() for key, value in batch.items()},
                "learning_rates": learning_rates,
            },
            path,
        )
        return path
