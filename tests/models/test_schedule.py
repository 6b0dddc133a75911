"""The learning-rate schedule: transformers' linear warmup and decay, without loading peft and
bitsandbytes into a GPT-2 run."""

from __future__ import annotations

import pytest
import torch
from transformers import get_linear_schedule_with_warmup

from storygen.models.schedule import build_linear_warmup_schedule
from tests.conftest import run_python


def learning_rates(build, steps: int) -> list[float]:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build(optimizer, num_warmup_steps=3, num_training_steps=10)
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def test_the_schedule_is_transformers_linear_warmup_and_decay():
    # past the end too: the rate stays at 0
    ours = learning_rates(build_linear_warmup_schedule, 13)
    assert ours == learning_rates(get_linear_schedule_with_warmup, 13)
    assert ours[:4] == pytest.approx([0.0, 0.1 / 3, 0.2 / 3, 0.1]) and ours[10:] == [0.0] * 3


def test_a_checkpointed_schedule_resumes_in_the_other():
    """Checkpoints written while the configs named transformers' schedule resume in ours."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    theirs = get_linear_schedule_with_warmup(optimizer, 3, 10)
    for _ in range(5):
        optimizer.step()
        theirs.step()
    ours = build_linear_warmup_schedule(optimizer, 3, 10)
    ours.load_state_dict(theirs.state_dict())
    assert ours.get_last_lr() == theirs.get_last_lr() and ours.last_epoch == 5


def test_a_gpt2_model_and_its_schedule_load_neither_peft_nor_bitsandbytes():
    """bitsandbytes loads only where 4-bit is used: on CPUs with AVX512-BF16 importing it
    warns (it looks for a kernel on the Hugging Face hub) in a run that has no 4-bit layer."""
    script = (
        "import sys, tempfile\n"
        "from pathlib import Path\n"
        "from hydra.utils import instantiate\n"
        "from tests.conftest import TINY_RUN, compose_config\n"
        "cfg = compose_config(TINY_RUN, Path(tempfile.mkdtemp()))\n"
        "model = instantiate(cfg.model, tokenizer=instantiate(cfg.model.tokenizer))\n"
        "optimizer = model.optimizer_factory(model.parameters())\n"
        "model.scheduler_factory(optimizer, num_training_steps=10)\n"
        "print(sorted({'peft', 'bitsandbytes'} & sys.modules.keys()))\n"
    )
    result = run_python(script)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stdout
