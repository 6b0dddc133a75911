"""The loggers storygen configures: a CSV logger that continues a resumed run's `metrics.csv`
instead of replacing it, and a W&B logger whose summary keeps each metric's best.

The CSV logger overrides and reads private names of Lightning's CSV writer and logger; the
Lightning releases they were read from, and the check that they still exist, are in
`callbacks/lightning_internals.py`.
"""

from __future__ import annotations

import csv
import logging
import os
import pickle
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from storygen.callbacks.lightning_internals import (
    drop_unset_wandb_anonymous,
    wandb_logger_is_offline,
)
from storygen.metrics.directions import SUMMARIZED_STAGES, direction

log = logging.getLogger(__name__)


class AppendingExperimentWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv; this one keeps its rows and header,
    so the losses logged before an interruption stay in front of the resumed ones. An earlier
    attempt's hparams.yaml stays too; this attempt's goes to hparams.1.yaml, ..."""

    def _check_log_dir_exists(self) -> None:
        attempt = 0
        while self._fs.isfile(os.path.join(self.log_dir, self.NAME_HPARAMS_FILE)):
            attempt += 1
            self.NAME_HPARAMS_FILE = f"hparams.{attempt}.yaml"
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = list(csv.DictReader(file).fieldnames or [])


class ResumableCSVLogger(CSVLogger):
    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


STEP_AXIS = "trainer/global_step"


# the W&B data dir an offline run set, so the next run of a sweep tells it from the user's
_data_dir_set: str | None = None


class SummarizingWandbLogger(WandbLogger):
    """Lightning's W&B logger, with each run's summary holding the best and the last value of
    every validation and test metric that has a better side (`val/loss: {min, last}`,
    `val/rouge1: {max, last}`, on the trainer's step axis), and the best checkpoint's step and
    monitored score (`checkpoint/best_step`, `checkpoint/best_score`, `checkpoint/monitor`).
    Without this W&B keeps only the last value, so the runs table and its plots would show
    each run's last validation while its test metrics come from its best checkpoint."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        drop_unset_wandb_anonymous(self)
        self._summarized: set[str] = set()
        self._best_path = ""
        global _data_dir_set
        current = os.environ.get("WANDB_DATA_DIR")
        if current and current != _data_dir_set:
            return  # the user's own choice
        # W&B stages each logged table (the generations) in its data dir, by default in the
        # home directory, where an offline run's `wandb sync` then reads it: keep it in the
        # run dir instead, with the rest of the run (each job of a sweep its own)
        os.environ.pop("WANDB_DATA_DIR", None)
        _data_dir_set = None
        if wandb_logger_is_offline(self) and self.save_dir:
            _data_dir_set = os.path.join(self.save_dir, "wandb", "data")
            os.environ["WANDB_DATA_DIR"] = _data_dir_set

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        # defined before the first value arrives, so the summary's best counts that one too
        for key in metrics:
            if key not in self._summarized and key.startswith(SUMMARIZED_STAGES):
                self._summarized.add(key)
                if (better := direction(key)) is not None:
                    # an explicit definition does not inherit the `*` glob's step metric
                    self.experiment.define_metric(
                        key, summary=f"{better},last", step_metric=STEP_AXIS
                    )
        super().log_metrics(metrics, step)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        super().after_save_checkpoint(checkpoint_callback)
        best = checkpoint_callback.best_model_path
        if not best or best == self._best_path or checkpoint_callback.best_model_score is None:
            return
        self._best_path = best
        # the step is in the checkpoint (whatever its file name says); mmap reads the header
        # without the weights
        summary = {
            "checkpoint/best_score": float(checkpoint_callback.best_model_score),
            "checkpoint/monitor": checkpoint_callback.monitor,
        }
        try:
            saved = torch.load(best, map_location="cpu", weights_only=True, mmap=True)
            summary["checkpoint/best_step"] = int(saved["global_step"])
        except (OSError, RuntimeError, KeyError, pickle.UnpicklingError) as exc:
            # a strategy's sharded checkpoint (a directory) has no one file to read: the
            # summary goes without the step rather than the run stopping for it
            log.warning("W&B summary: no step read from %s (%s)", best, exc)
        self.experiment.summary.update(summary)

    @rank_zero_only
    def save_configs(self, hydra_dir: Path) -> None:
        """The run's composed config, overrides and Hydra config (`.hydra/*.yaml`) as files of
        the W&B run, under `.hydra/`, so the run can be composed again from W&B alone. Copied
        into the run's files first: W&B warns about every file it links there itself."""
        if not hydra_dir.is_dir():
            return
        files = Path(self.experiment.dir)
        (files / ".hydra").mkdir(exist_ok=True)
        for config in hydra_dir.glob("*.yaml"):
            shutil.copyfile(config, files / ".hydra" / config.name)
        self.experiment.save(str(files / ".hydra" / "*.yaml"), base_path=str(files), policy="now")

    @rank_zero_only
    def log_export(self, directory: Path, checkpoint_callback: ModelCheckpoint | None) -> None:
        """The exported model (the best checkpoint's weights, adapters only for LoRA) as a
        `model` artifact with aliases best and latest and the monitored score in its metadata.
        Online only: offline, W&B would stage a copy outside the run dir (the checkpoints go
        the same way: `log_model` is on only online, conf/logger/wandb.yaml)."""
        if wandb_logger_is_offline(self):
            return
        import wandb

        metadata = {}
        if checkpoint_callback is not None and checkpoint_callback.best_model_score is not None:
            metadata = {
                "monitor": checkpoint_callback.monitor,
                "score": float(checkpoint_callback.best_model_score),
                "checkpoint": Path(checkpoint_callback.best_model_path).name,
            }
        artifact = wandb.Artifact(f"export-{self.experiment.id}", type="model", metadata=metadata)
        artifact.add_dir(str(directory))
        self.experiment.log_artifact(artifact, aliases=["best", "latest"])
