"""The optimizer however it is configured (a partial, a builder function, another class): weight
decay, the setup check and inspect's state accounting read the optimizer, not its config's shape."""

from __future__ import annotations

import functools

import bitsandbytes as bnb
import pytest
import torch
from hydra.utils import instantiate

from storygen.checks import check_optimizer
from storygen.errors import StorygenError
from storygen.models.module import StoryLM, parameter_groups
from tests.conftest import TINY_RUN, compose_config


def build_adamw(params):
    """A builder function, as torchtune's configs point at: its settings live in its body."""
    return torch.optim.AdamW(params, lr=3e-3, weight_decay=0.1)


def build_adamw_with_bad_lr(params):
    return torch.optim.AdamW(params, lr="abc")


def built_groups(tiny_model: StoryLM, factory) -> tuple[list[dict], dict[int, str]]:
    """The param groups of the optimizer StoryLM builds with `factory`, and parameter names."""
    model = StoryLM(tiny_model.backbone, tiny_model.tokenizer, optimizer=factory)
    optimizer = model.configure_optimizers()["optimizer"]
    return optimizer.param_groups, {id(p): n for n, p in model.backbone.named_parameters()}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> StoryLM:
    return instantiate(compose_config(TINY_RUN, tmp_path_factory.mktemp("tiny")).model)


def test_a_builder_functions_weight_decay_reaches_the_matrices(tiny_model):
    decay, no_decay = built_groups(tiny_model, build_adamw)[0]
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["params"]
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["params"]


def test_a_partial_gives_the_groups_it_always_gave(tiny_model):
    """The groups equal those of the explicit per-group setting the module used to pass."""
    factory = functools.partial(torch.optim.AdamW, lr=3e-3, weight_decay=0.01)
    groups, _ = built_groups(tiny_model, factory)
    matrices = [p for p in tiny_model.backbone.parameters() if p.ndim >= 2]
    vectors = [p for p in tiny_model.backbone.parameters() if p.ndim < 2]
    explicit = factory(
        [{"params": matrices, "weight_decay": 0.01}, {"params": vectors, "weight_decay": 0.0}]
    ).param_groups
    assert [{**g, "params": [id(p) for p in g["params"]]} for g in groups] == [
        {**g, "params": [id(p) for p in g["params"]]} for g in explicit
    ]


def test_the_shipped_paged_8bit_adamw_decays_matrices_only(tmp_path):
    """mistral_lora's PagedAdamW8bit (a bitsandbytes optimizer) inherits its weight_decay too."""
    factory = instantiate(compose_config(["model=mistral_lora"], tmp_path).model.optimizer)
    layer = torch.nn.Linear(8, 8)
    optimizer = factory(parameter_groups(layer))
    assert isinstance(optimizer, bnb.optim.PagedAdamW8bit)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.01 and decay["params"] == [layer.weight]
    assert no_decay["weight_decay"] == 0.0 and no_decay["params"] == [layer.bias]


def test_a_builder_function_with_a_bad_setting_fails_with_its_name():
    """Its settings are in its body, not in partial keywords: the message names the function."""
    with pytest.raises(StorygenError) as error:
        check_optimizer(build_adamw_with_bad_lr)
    message = str(error.value)
    assert f"model.optimizer ({__name__}.build_adamw_with_bad_lr) fails" in message
    assert "'float' and 'str'" in message and "\n" not in message


def test_a_partial_with_a_bad_setting_names_the_key():
    with pytest.raises(StorygenError, match=r"model\.optimizer\.lr='abc' is not a number"):
        check_optimizer(functools.partial(torch.optim.AdamW, lr="abc"))
