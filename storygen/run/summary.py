"""What a researcher wants to see when a run ends: where things are and how it went."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from storygen.callbacks.story_metrics import StoryMetricsCallback

log = logging.getLogger(__name__)


def train_loss_curve(metrics_csv: Path) -> list[float]:
    """`train/loss` values in the order the CSV logger wrote them."""
    with metrics_csv.open(newline="") as handle:
        return [
            float(row["train/loss"])
            for row in csv.DictReader(handle)
            if row.get("train/loss") not in (None, "")
        ]


def summarize_run(trainer: Trainer, wandb_run_dir: str | None, stories_shown: int = 3) -> str:
    lines = ["", "=" * 72, "Run finished"]
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None:
        lines.append(f"  best checkpoint : {checkpoint.best_model_path or '-'}")
        lines.append(f"  last checkpoint : {checkpoint.last_model_path or '-'}")
    for logger in trainer.loggers:
        if isinstance(logger, CSVLogger):
            metrics_csv = Path(logger.log_dir) / "metrics.csv"
            lines.append(f"  CSV metrics     : {metrics_csv}")
            losses = train_loss_curve(metrics_csv) if metrics_csv.exists() else []
            if losses:
                lines.append(
                    f"  train/loss      : first {losses[0]:.3f} -> last {losses[-1]:.3f}"
                    f" ({len(losses)} logged steps)"
                )
    if wandb_run_dir:
        lines.append(f"  W&B run dir     : {wandb_run_dir}")
        if Path(wandb_run_dir).name.startswith("offline-run-"):
            output_dir = Path(wandb_run_dir).parents[1]
            lines.append(f"  upload to W&B   : python -m storygen.sync {output_dir}")
    for key in ("val/loss", "val/rouge1", "test/loss", "test/rouge1", "test/rougeL"):
        value = trainer.callback_metrics.get(key)
        if value is not None and math.isfinite(float(value)):
            lines.append(f"  {key:<16}: {float(value):.4f}")
    story_callbacks = [c for c in trainer.callbacks if isinstance(c, StoryMetricsCallback)]
    samples = story_callbacks[0].samples[:stories_shown] if story_callbacks else []
    for number, sample in enumerate(samples, start=1):
        lines += [
            "",
            f"--- story {number} ---",
            f"[prompt] {sample['prompt']}",
            f"[model]  {sample['generation']}",
        ]
    lines.append("=" * 72)
    return "\n".join(lines)


def wandb_run_dir(trainer: Trainer) -> str | None:
    """The W&B run's directory (`.../wandb/offline-run-*`), read before the run is finished."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            return str(Path(logger.experiment.dir).parent)
    return None
