"""The optimizer however it is configured (a partial, a builder function, another class): weight
decay, the setup check and inspect's state accounting read the optimizer, not its config's shape."""

from __future__ import annotations

import functools

import bitsandbytes as bnb
import pytest
import torch
from hydra.utils import instantiate

from storygen.errors import StorygenError
from storygen.inspect import report, training_shape
from storygen.models.loader import build_skeleton
from storygen.models.module import StoryLM, parameter_groups
from storygen.run.checks import check_optimizer
from tests.conftest import TINY_RUN, compose_config


def build_adamw(params):
    """A builder function, as torchtune's configs point at: its settings live in its body."""
    return torch.optim.AdamW(params, lr=3e-3, weight_decay=0.1)


def build_paged_adamw(params, lr: float, weight_decay: float):
    """bitsandbytes' paged 8-bit AdamW behind a name that says neither."""
    return bnb.optim.PagedAdamW8bit(params, lr=lr, weight_decay=weight_decay)


def build_adamw_with_bad_lr(params):
    return torch.optim.AdamW(params, lr="abc")


def built_groups(tiny_model: StoryLM, factory) -> list[dict]:
    """The param groups of the optimizer StoryLM builds with `factory`."""
    model = StoryLM(tiny_model.backbone, tiny_model.tokenizer, optimizer=factory)
    return model.configure_optimizers()["optimizer"].param_groups


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> StoryLM:
    return instantiate(compose_config(TINY_RUN, tmp_path_factory.mktemp("tiny")).model)


def test_a_builder_functions_weight_decay_reaches_the_matrices(tiny_model):
    decay, no_decay = built_groups(tiny_model, build_adamw)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"]) and decay["params"]
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["params"]


def test_a_partial_gives_the_groups_it_always_gave(tiny_model):
    """The groups equal those of the explicit per-group setting the module used to pass."""
    factory = functools.partial(torch.optim.AdamW, lr=3e-3, weight_decay=0.01)
    groups = built_groups(tiny_model, factory)
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


EIGHT_BIT_PAGED = 2 + 2 * 4 / 256  # two 1-byte moments and an fp32 absmax per 256 values


@pytest.mark.parametrize(
    "optimizer",
    [
        [f"model.optimizer._target_={__name__}.build_paged_adamw"],
        [
            "model.optimizer._target_=bitsandbytes.optim.AdamW",
            "+model.optimizer.optim_bits=8",
            "+model.optimizer.is_paged=true",
        ],
    ],
    ids=["builder-function", "bnb-AdamW-optim_bits-8"],
)
def test_inspect_accounts_an_8bit_paged_optimizer_by_what_it_is(optimizer, tmp_path):
    """Not by its name: the estimate equals the shipped PagedAdamW8bit's, line for line."""
    overrides = ["model=mistral_lora", "trainer=gpu"]
    cfg = compose_config([*overrides, *optimizer], tmp_path, config_name="inspect")
    architecture = instantiate(cfg.model.backbone.architecture)
    model = build_skeleton(architecture, instantiate(cfg.model.backbone.lora))
    shape = training_shape(cfg, architecture, model)
    assert shape.optimizer_bytes_per_param == EIGHT_BIT_PAGED and shape.paged_optimizer
    shipped = compose_config(overrides, tmp_path, config_name="inspect")
    assert report(cfg).splitlines()[4:] == report(shipped).splitlines()[4:]


def test_inspect_accounts_torch_adamw_at_two_fp32_moments(tmp_path):
    cfg = compose_config(["model=gpt2_tiny"], tmp_path, config_name="inspect")
    architecture = instantiate(cfg.model.backbone.architecture)
    shape = training_shape(cfg, architecture, build_skeleton(architecture))
    assert shape.optimizer_bytes_per_param == 8.0 and not shape.paged_optimizer


@pytest.mark.parametrize("model", ["gpt2", "gpt2_tiny", "mistral_lora", "mistral_tiny_lora"])
def test_the_optimizer_gets_plain_python_values(model, tmp_path):
    """No OmegaConf container reaches the optimizer: torch before 2.7 keeps `betas` as given,
    in every checkpoint, and a resume loads checkpoints with weights_only=True, which refuses
    a ListConfig."""
    optimizer = instantiate(compose_config([f"model={model}"], tmp_path).model.optimizer)
    values = [*optimizer.args, *optimizer.keywords.values()]
    assert not [v for v in values if type(v).__module__.startswith("omegaconf")], values
