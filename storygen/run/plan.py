"""What a training run will do, worked out before the model is built, and said in a few lines.

The numbers follow Lightning's own rules (a partial accumulation steps at the epoch's end, a
fraction of the epoch validates every int(batches x fraction) batches, `max_steps` stops within
an epoch) and storygen's one addition, a validation at the end of training
(callbacks.final_validation): tests/test_train.py checks them against what a run does.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from datetime import timedelta

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Timer

from storygen.errors import StorygenError

# A run above this many optimizer steps is warned about. The study's runs take at most 3,750
# (GPT-2, 10,000 stories x 3 epochs / 8); 100,000 steps are half a day of GPT-2 small at 0.5 s a
# step and days of a 7B QLoRA model at 2-5 s. The bare `model=mistral_lora data=tinystories`
# (3 epochs over 2.1M stories, batch 8) plans ~795,000: nobody starts that by accident twice.
LARGE_RUN_STEPS = 100_000


@dataclass(frozen=True)
class TrainingPlan:
    """A fit's size: every count per device, None where a stream leaves it unknown."""

    stories: int | None
    """train stories (before packing); None: streamed"""
    tokens_per_epoch: int | None
    """train tokens of one pass over the data, the EOS included; None: streamed, or
    tokenized as loaded"""
    batches_per_epoch: int | None
    epochs: int | None
    """epochs begun (the last one may stop at max_steps)"""
    optimizer_steps: int | None
    """None: no limit (max_epochs=-1 without max_steps, e.g. stopped by max_time)"""
    validations: int | None
    time_limit_s: float | None = None
    """trainer.max_time: the fit stops there if it comes first"""

    def line(self) -> str:
        def count(value: int | None) -> str:
            return "unknown" if value is None else f"{value:,}"

        stories = "streamed" if self.stories is None else f"{self.stories:,}"
        tokens = (
            "tokenized as they load"
            if self.tokens_per_epoch is None and self.stories is not None
            else f"{count(self.tokens_per_epoch)} tokens per epoch"
        )
        return (
            f"Plan: {stories} stories, {tokens}; "
            f"{count(self.batches_per_epoch)} batches per epoch x {count(self.epochs)} "
            f"epoch{'' if self.epochs == 1 else 's'} "
            f"= {count(self.optimizer_steps)} optimizer steps; {count(self.validations)} "
            "validations"
            + (
                ""
                if self.time_limit_s is None
                else f", or fewer at trainer.max_time {timedelta(seconds=self.time_limit_s)}"
            )
        )

    @property
    def large(self) -> bool:
        """Many steps and no time limit: a limit the user set bounds the run anyway."""
        return (
            self.time_limit_s is None
            and self.optimizer_steps is not None
            and self.optimizer_steps > LARGE_RUN_STEPS
        )

    def warning(self) -> str:
        return (
            f"This run plans {self.optimizer_steps:,} optimizer steps (over {LARGE_RUN_STEPS:,}), "
            "days on one GPU for a 7B model; to start smaller, set data.max_train_samples, "
            "trainer.max_epochs or trainer.max_steps"
        )

    def as_dict(self) -> dict:
        return asdict(self)


def batches_per_epoch(rows: int, batch_size: int, world_size: int, limit: int | float) -> int:
    """Each device's batches: Lightning's distributed sampler gives it ceil(rows / devices)
    rows, and limit_train_batches cuts them (a count, or a fraction rounded down)."""
    batches = math.ceil(math.ceil(rows / world_size) / batch_size)
    limited = min(batches, limit) if isinstance(limit, int) else int(batches * limit)
    if limited == 0:
        raise StorygenError(
            f"trainer.limit_train_batches={limit} leaves none of the epoch's {batches:,} "
            f"batches; set trainer.limit_train_batches to at least {1 / batches:.3g} (or 1)."
        )
    return limited


def plan_training(
    trainer: Trainer, train_size: tuple[int, int, int | None] | None, batch_size: int
) -> TrainingPlan:
    """The plan of `trainer.fit` over the train split's (stories, rows, tokens) (None: a
    stream), refusing a validation interval longer than the epoch here rather than after the
    model is built."""
    accumulate = trainer.accumulate_grad_batches
    max_steps = trainer.max_steps if trainer.max_steps > 0 else None
    max_epochs = trainer.max_epochs if trainer.max_epochs not in (None, -1) else None
    # Lightning turns trainer.max_time into a Timer callback; before the fit all of it remains
    limit = next((c.time_remaining() for c in trainer.callbacks if isinstance(c, Timer)), None)
    if train_size is None:  # a stream: its length is known once it ends
        return TrainingPlan(None, None, None, None, max_steps, None, limit)
    stories, rows, tokens_per_epoch = train_size
    batches = batches_per_epoch(rows, batch_size, trainer.world_size, trainer.limit_train_batches)
    check_val_interval(trainer.val_check_interval, trainer.check_val_every_n_epoch, batches)
    steps_per_epoch = math.ceil(batches / accumulate)
    steps = min(
        max_steps or math.inf, (max_epochs or math.inf) * steps_per_epoch
    )  # Lightning gives max_epochs 1000 when neither is set; max_epochs=-1 alone has no end
    if steps == math.inf:
        return TrainingPlan(stories, tokens_per_epoch, batches, None, None, None, limit)
    epochs = math.ceil(steps / steps_per_epoch)
    # batches of the last epoch: max_steps may stop it after its r-th step
    last_steps = steps - (epochs - 1) * steps_per_epoch
    last_batches = min(batches, last_steps * accumulate)
    validations = count_validations(trainer, batches, epochs, last_batches, steps)
    return TrainingPlan(stories, tokens_per_epoch, batches, epochs, steps, validations, limit)


def check_val_interval(interval: object, every_n_epochs: int | None, batches: int) -> None:
    if isinstance(interval, int) and every_n_epochs is not None and interval > batches:
        raise StorygenError(
            f"trainer.val_check_interval={interval} is more batches than an epoch has "
            f"({batches:,}); set trainer.val_check_interval to at most {batches}, or to a "
            "fraction of the epoch (e.g. 0.4)."
        )


def count_validations(
    trainer: Trainer, batches: int, epochs: int, last_batches: int, steps: int
) -> int:
    """Validations of the fit: at every val_check_batch-th batch of each validating epoch, and
    once more at the end of training when that batch is not one (FinalValidation)."""
    if not trainer.limit_val_batches:
        return 0
    interval, every = trainer.val_check_interval, trainer.check_val_every_n_epoch
    if isinstance(interval, int):
        every_batch = interval
    else:
        every_batch = batches if interval == 1.0 else max(1, int(batches * interval))
    if every is None:  # every_batch counts batches across epochs
        total = (epochs - 1) * batches + last_batches
        final = total % every_batch and final_validation_runs(trainer, epochs, steps)
        return total // every_batch + (1 if final else 0)
    validations = 0
    for epoch in range(every - 1, epochs, every):
        run = last_batches if epoch == epochs - 1 else batches
        validations += run // every_batch
    ends_unvalidated = epochs % every == 0 and last_batches % every_batch
    if ends_unvalidated and final_validation_runs(trainer, epochs, steps):
        validations += 1  # the end of training, validated by FinalValidation
    return validations


def final_validation_runs(trainer: Trainer, epochs: int, steps: int) -> bool:
    """Lightning stops early (and so validates, see FinalValidation) only once min_epochs
    epochs have ended (in the last epoch, `epochs - 1` have) and min_steps steps are done."""
    return (trainer.min_epochs or 0) <= epochs - 1 and (trainer.min_steps or 0) <= steps
