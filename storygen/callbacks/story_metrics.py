"""Generate stories for a fixed prompt set at every validation and test, and score them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger

from storygen.metrics.intervals import mean_interval
from storygen.metrics.lengths import word_counts
from storygen.metrics.rouge import as_conventions
from storygen.metrics.scoring import generate_and_score, story_records, write_generations
from storygen.models.generation import GenerationSettings

log = logging.getLogger(__name__)


class StoryMetricsCallback(Callback):
    """Logs `val/rouge1`... (`val/hf_rouge1`... for each further ROUGE convention; `test/...`
    alike), lengths, diversity, the EOS rate, the share of stories cut by the cap
    (`val/gen_truncated`), and a W&B table of generations per validation with a histogram of
    their lengths.

    The prompts are the first `num_prompts` stories of the split and sampling is seeded, so
    the same prompts are continued the same way at every validation and in every run.
    """

    def __init__(
        self,
        generation: GenerationSettings,
        num_prompts: int = 8,
        num_test_prompts: int | None = None,
        batch_size: int = 8,
        seed: int = 0,
        generations_dir: str | None = None,
        rouge: Mapping[str, Mapping[str, Any] | None] | None = None,
    ) -> None:
        self.generation = generation
        self.rouge = as_conventions(rouge)
        self.num_prompts = {
            "val": num_prompts,
            "test": num_prompts if num_test_prompts is None else num_test_prompts,
        }
        self.batch_size = batch_size
        self.seed = seed
        self.generations_dir = Path(generations_dir) if generations_dir else None
        self.samples: list[dict[str, Any]] = []

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._score(trainer, pl_module, stage="val", split="validation")

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._score(trainer, pl_module, stage="test", split="test")

    def _score(self, trainer: Trainer, pl_module: LightningModule, stage: str, split: str) -> None:
        if self.num_prompts[stage] <= 0:
            return
        datamodule = trainer.datamodule
        prompts = datamodule.story_prompts(split, self.num_prompts[stage])
        # Lightning autocasts only the step methods: generate under the run's precision too
        # (bf16 on a GPU, not fp32); with 32-true this context does nothing.
        with trainer.precision_plugin.forward_context():
            stories, scores = generate_and_score(
                pl_module.backbone,
                pl_module.tokenizer,
                prompts,
                self.generation,
                max_length=datamodule.story_format.max_length,
                batch_size=self.batch_size,
                seed=self.seed,
                rouge=self.rouge,
            )
        metrics = {f"{stage}/{name}": value for name, value in scores.items()}
        pl_module.log_dict(metrics, sync_dist=True)
        self.samples = story_records(prompts, stories, self.rouge)
        self._log_table(trainer, stage)
        if trainer.is_global_zero:
            self._summarize_intervals(trainer, stage)
        if self.generations_dir is not None and trainer.is_global_zero:
            # the latest stories of the stage, for `storygen.compare` and for reading
            write_generations(self.generations_dir / f"{stage}.jsonl", self.samples)

    def _summarize_intervals(self, trainer: Trainer, stage: str) -> None:
        """The 95% interval over prompts of each per-story metric in the W&B summary
        (`test/rouge1_lo`, `test/rouge1_hi`), beside the mean the metric logs."""
        wandb_loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
        if not wandb_loggers:
            return
        bounds = {}
        for name in self.samples[0]["scores"]:
            interval = mean_interval([sample["scores"][name] for sample in self.samples])
            bounds |= {f"{stage}/{name}_lo": interval.low, f"{stage}/{name}_hi": interval.high}
        for logger in wandb_loggers:
            logger.experiment.summary.update(bounds)

    def _log_table(self, trainer: Trainer, stage: str) -> None:
        columns = ["step", "prompt", "reference", "generation", "new_tokens", "ended_with_eos"]
        rows = [[trainer.global_step] + [s[key] for key in columns[1:]] for s in self.samples]
        # each story's scores as columns `scores/rouge1`, ...: compare --wandb reads them back
        names = list(self.samples[0]["scores"]) if self.samples else []
        columns += [f"scores/{name}" for name in names]
        rows = [row + [s["scores"][n] for n in names] for row, s in zip(rows, self.samples)]
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.log_table(key=f"{stage}/generations", columns=columns, data=rows)
                lengths = word_counts([s["generation"] for s in self.samples])
                logger.experiment.log(
                    {
                        f"{stage}/length_histogram": wandb.Histogram(lengths),
                        "trainer/global_step": trainer.global_step,
                    }
                )
