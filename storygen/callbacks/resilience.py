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
from datasets import IterableDataset
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torchdata.stateful_dataloader import StatefulDataLoader

from storygen.callbacks.lightning_internals import (
    check_lightning_internals,
    end_restart,
    restart_train_iterator,
    set_sampler_epoch,
    stop_after_this_step,
    train_loaders,
)
from storygen.errors import StorygenError

log = logging.getLogger(__name__)


def last_checkpoint_path(trainer: Trainer) -> Path:
    directory = trainer.checkpoint_callback.dirpath if trainer.checkpoint_callback else None
    return Path(directory or trainer.default_root_dir) / "last.ckpt"


def save_last_checkpoint(trainer: Trainer) -> Path:
    """Write `last.ckpt` as the checkpoint callback's own last checkpoint: its state then
    names it, so the resumed run overwrites it rather than writing `last-v1.ckpt`."""
    path = last_checkpoint_path(trainer)
    if isinstance(trainer.checkpoint_callback, ModelCheckpoint):
        trainer.checkpoint_callback.last_model_path = str(path)
    trainer.save_checkpoint(path, weights_only=False)  # all of it: a resume needs every state
    return path


class InterruptionCheckpoint(Callback):
    """`last.ckpt` holds the latest step whenever training stops: at its end (also mid-epoch,
    at `trainer.max_steps`), on SIGTERM (a preempted job) or on a first Ctrl-C.

    Both signals are only noted when they arrive; training stops at the next optimizer step
    (with `trainer.accumulate_grad_batches`, never between the micro-batches of a step, whose
    gradients a checkpoint cannot hold), after that step's metrics are logged and any
    validation due then has run, and the checkpoint is saved there, so `ckpt_path=last`
    resumes exactly. Under DDP every rank stops at the same step if any rank was signalled.
    A second Ctrl-C stops at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self.saved_step = -1
        self._step_at_batch_start = 0
        self._previous_handlers: dict[int, Any] = {}

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning's own SIGTERM handler would stop after the current micro-batch.
        self.requested = False
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        log.warning(
            "%s: stopping after this optimizer step with a checkpoint%s",
            name,
            " (Ctrl-C again to stop now)" if signum == signal.SIGINT else "",
        )

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        if trainer.global_step == self._step_at_batch_start:
            return  # a micro-batch: its gradients wait for the optimizer step
        stop = self.requested
        if trainer.world_size > 1:  # every rank must stop (and save) together
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            stop_after_this_step(trainer)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException):
        if isinstance(exception, SIGTERMException) and self.saved_step != trainer.global_step:
            path = save_last_checkpoint(trainer)
            log.warning("Stopped by a signal at step %d; saved %s", trainer.global_step, path)

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict):
        self.saved_step = trainer.global_step

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.checkpoint_callback is not None and self.saved_step != trainer.global_step:
            save_last_checkpoint(trainer)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        for signum, handler in self._previous_handlers.items():
            signal.signal(signum, handler)
        self._previous_handlers = {}


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


class TrainLoaderResume(Callback):
    """The train loader sees each epoch's own order, and a resumed run continues it exactly.

    Lightning hands the epoch to a loader's sampler only, so a stream (`data.streaming=true`)
    gets it here, each epoch. On a resume, the loader may have been built and iterated
    before the checkpoint was read (when the learning-rate schedule asks for
    `trainer.estimated_stepping_batches`; Lightning then never loads the saved position,
    issue #20550), and with the epoch of a fresh sampler. So at the start of a resumed fit the
    loader is given the epoch to train, its saved position when that epoch is under way
    (none when the checkpoint was taken at the end of an epoch: the next epoch starts
    afresh), and is iterated anew.

    A checkpoint saved once an epoch's batches have ended (a stop requested in its last
    batch saves at the epoch's end) is restored by Lightning as a restart within the ended
    epoch when `trainer.max_steps` is set: the next epoch ended at once, untrained (a stream
    or a sized loader alike; with no epoch limit the epochs after it then trained, logged a
    step late). Such a resume starts the next epoch as the uninterrupted run does: the loops
    not restarting, the ended epoch counted as completed, the loader iterated from the start
    of its next epoch.
    """

    def __init__(self) -> None:
        self.saved_positions: list[dict] | None = None
        self.saved_after_epoch_end = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":  # before any model step: a resume must not go inexact unnoticed
            check_lightning_internals(trainer)

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict):
        fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
        self.saved_positions = fit_loop.get("state_dict", {}).get("combined_loader", [])
        epochs = fit_loop.get("epoch_progress", {}).get("current", {})
        batches = fit_loop.get("epoch_loop.batch_progress", {})
        self.saved_after_epoch_end = bool(
            batches.get("is_last_batch")
            and epochs.get("ready") == epochs.get("started") == epochs.get("processed")
        )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.saved_positions is None:
            return
        progress = trainer.fit_loop.epoch_progress.current
        set_loader_epoch(trainer, progress.processed)
        if progress.started > progress.processed:  # resumed within an epoch
            loaders = [loader for loader in train_loaders(trainer) if hasattr(loader, "state_dict")]
            for loader, position in zip(loaders, self.saved_positions):
                loader.load_state_dict(position)
        elif self.saved_after_epoch_end:
            start_next_epoch(trainer)
        self.saved_positions = None
        restart_train_iterator(trainer)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        set_loader_epoch(trainer, trainer.fit_loop.epoch_progress.current.processed)


def start_next_epoch(trainer: Trainer) -> None:
    """Leave a resumed fit whose saved epoch had ended in the state an uninterrupted run is
    in before its next epoch (what Lightning does itself when `max_steps` is not set)."""
    end_restart(trainer)
    epochs = trainer.fit_loop.epoch_progress
    if epochs.current.completed < epochs.current.processed:  # saved in on_train_epoch_end
        epochs.increment_completed()
    for loader in train_loaders(trainer):  # Lightning may have given it the ended position
        if isinstance(loader, StatefulDataLoader):
            loader.next_iter_state = None


def set_loader_epoch(trainer: Trainer, epoch: int) -> None:
    """Lightning's own `set_epoch` on the samplers, and on a stream's dataset."""
    for loader in train_loaders(trainer):
        set_sampler_epoch(loader, epoch)
        if isinstance(getattr(loader, "dataset", None), IterableDataset):
            loader.dataset.set_epoch(epoch)


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
        self._step = 0

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, *args) -> None:
        self._step = trainer.global_step  # the step the metrics log this batch's loss at

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: dict, *args
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self._recent.append((self._step, loss.detach(), batch))
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
