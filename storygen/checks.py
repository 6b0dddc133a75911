"""Checks across config groups that no single component can make alone, run before training."""

from __future__ import annotations

from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from transformers import PretrainedConfig

from storygen.errors import StorygenError


def check_precision(trainer: Trainer) -> None:
    if isinstance(trainer.accelerator, CPUAccelerator) and "bf16" in str(trainer.precision):
        raise StorygenError(
            f"trainer.precision={trainer.precision} on a CPU is hundreds of times slower than "
            "fp32; use trainer=cpu (precision 32-true) or train on a GPU (trainer=gpu)."
        )


def check_context_length(max_length: int, model_config: PretrainedConfig) -> None:
    context = getattr(model_config, "max_position_embeddings", None)
    if context is not None and max_length > context:
        raise StorygenError(
            f"data.max_length={max_length} is above the model's context of {context} tokens; "
            f"set data.max_length<={context}."
        )
