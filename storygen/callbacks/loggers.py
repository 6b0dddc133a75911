"""A CSV logger that continues a resumed run's `metrics.csv` instead of replacing it.

It overrides and reads private names of Lightning's CSV writer and logger; the Lightning
releases they were read from, and the check that they still exist, are in
`callbacks/lightning_internals.py`.
"""

from __future__ import annotations

import csv
import os

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment


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
