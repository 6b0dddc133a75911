"""What storygen puts in a W&B run for the dashboard: choices, the swept keys, tags."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import read_write

from storygen.environment.wandb_run import dashboard_keys, run_tags
from tests.conftest import compose_config


def test_an_optuna_search_sweeps_exactly_its_search_spaces_keys_typed(tmp_path: Path) -> None:
    cfg = compose_config(["hparams_search=lora_optuna", "model=mistral_tiny_lora"], tmp_path)
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN  # as the sweeper's jobs run
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")  # holds no multirun.yaml
    HydraConfig().set_config(cfg)
    try:
        keys = dashboard_keys(cfg)
    finally:
        HydraConfig.instance().cfg = None
    assert keys["choices"]["hparams_search"] == "lora_optuna"
    assert keys["choices"]["model"] == "mistral_tiny_lora"
    sweep = keys["sweep"]
    assert list(sweep) == [
        "model.optimizer.lr",
        "model.backbone.lora.r",
        "model.backbone.lora.lora_alpha",
        "model.backbone.lora.lora_dropout",
    ]
    assert [type(value) for value in sweep.values()] == [float, int, int, float]
    assert sweep["model.backbone.lora.r"] == cfg.model.backbone.lora.r


def test_a_single_run_has_choices_and_no_sweep(tmp_path: Path) -> None:
    cfg = compose_config(["model=gpt2_tiny"], tmp_path)
    keys = dashboard_keys(cfg)
    assert keys["choices"]["model"] == "gpt2_tiny" and "sweep" not in keys
    assert not any(group.startswith("hydra") for group in keys["choices"])


def test_tags_add_model_and_data_once() -> None:
    assert list(run_tags(["dev"], "gpt2", "tinystories")) == [
        "dev",
        "model:gpt2",
        "data:tinystories",
    ]
    assert list(run_tags(["dev", "model:gpt2"], "gpt2", None)) == ["dev", "model:gpt2"]
