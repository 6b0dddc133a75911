"""Generate stories for a fixed prompt set at every validation and test, and score them."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from storygen.data.datamodule import StoryPrompt
from storygen.generation import (
    GeneratedStory,
    GenerationSettings,
    generate_stories,
    model_context,
    with_story_cap,
)
from storygen.metrics.lengths import word_counts
from storygen.metrics.rouge import STORYGEN, RougeConvention, as_conventions
from storygen.metrics.story import score_stories

log = logging.getLogger(__name__)


def generate_and_score(
    backbone: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[StoryPrompt],
    settings: GenerationSettings,
    max_length: int,
    batch_size: int,
    seed: int,
    rouge: tuple[RougeConvention, ...] = (STORYGEN,),
) -> tuple[list[GeneratedStory], dict[str, float]]:
    """Stories for a prompt set and their metrics (names without a stage prefix).

    The one path the test stage and `storygen.evaluate` share: the same checkpoint, prompts,
    settings, batch size, seed and ROUGE conventions give the same numbers in both.
    """
    inputs = [prompt.model_input for prompt in prompts]
    references = [prompt.reference for prompt in prompts]
    settings = with_story_cap(
        settings, tokenizer, inputs, references, max_length, model_context(backbone)
    )
    stories = generate_stories(backbone, tokenizer, inputs, settings, batch_size, seed)
    metrics = score_stories(
        [story.text for story in stories],
        references,
        [s.ended_with_eos for s in stories],
        rouge,
    )
    metrics["gen_tokens"] = sum(s.new_tokens for s in stories) / len(stories)
    metrics["gen_truncated"] = sum(s.truncated for s in stories) / len(stories)
    metrics["gen_cap"] = float(settings.max_new_tokens)
    return stories, metrics


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
        self.samples: list[dict[str, str]] = []

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
        self.samples = [
            {"prompt": prompt.prompt, "reference": prompt.reference, "generation": story.text}
            for prompt, story in zip(prompts, stories)
        ]
        self._log_table(trainer, stage, stories)
        if self.generations_dir is not None and trainer.is_global_zero:
            self._write_generations(stage, stories)

    def _write_generations(self, stage: str, stories: list[GeneratedStory]) -> None:
        """The latest stories of a stage as JSON lines, for `storygen.compare` and for reading."""
        self.generations_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            json.dumps(
                sample | {"new_tokens": story.new_tokens, "ended_with_eos": story.ended_with_eos}
            )
            for sample, story in zip(self.samples, stories)
        ]
        (self.generations_dir / f"{stage}.jsonl").write_text("\n".join(lines) + "\n")

    def _log_table(self, trainer: Trainer, stage: str, stories: list[GeneratedStory]) -> None:
        columns = ["step", "prompt", "reference", "generation", "new_tokens", "ended_with_eos"]
        rows = [
            [
                trainer.global_step,
                s["prompt"],
                s["reference"],
                s["generation"],
                g.new_tokens,
                g.ended_with_eos,
            ]
            for s, g in zip(self.samples, stories)
        ]
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
