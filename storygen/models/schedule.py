"""The learning-rate schedule the model configs name: linear warmup, then linear decay to 0.

transformers' `get_linear_schedule_with_warmup` gives the same factors, but importing it loads
transformers' Trainer utilities and with them peft and bitsandbytes: a second of start-up, and
on CPUs with AVX512-BF16 a bitsandbytes warning, in every GPT-2 run, which uses neither.
"""

from __future__ import annotations

from functools import partial

import torch
from torch.optim.lr_scheduler import LambdaLR


def build_linear_warmup_schedule(
    optimizer: torch.optim.Optimizer, num_warmup_steps: int, num_training_steps: int
) -> LambdaLR:
    """The learning rate rises from 0 over `num_warmup_steps`, then falls to 0 at
    `num_training_steps`. A `partial`, as transformers' is: a checkpoint's scheduler state
    loads into either."""
    factor = partial(
        linear_warmup_factor,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
    )
    return LambdaLR(optimizer, factor)


def linear_warmup_factor(step: int, *, num_warmup_steps: int, num_training_steps: int) -> float:
    if step < num_warmup_steps:
        return float(step) / float(max(1, num_warmup_steps))
    decay_steps = float(max(1, num_training_steps - num_warmup_steps))
    return max(0.0, float(num_training_steps - step) / decay_steps)
