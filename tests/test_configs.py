"""Every option of every config group composes, and the real-use commands compose as documented."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from hydra import initialize_config_dir
from hydra._internal.utils import _locate
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue

from tests.conftest import CONF_DIR, compose_config, run_python

GROUPS = ["model", "data", "trainer", "logger", "callbacks", "experiment", "rouge"]
OPTIONS = [
    (group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))
]
# options that are sweeps: one of their runs composes (the sweep itself: tests/test_reproduction.py)
ONE_RUN_OF = {"experiment=reproduction": ["reproduction_run=gpt2_writingprompts"]}


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(group: str, option: str, tmp_path: Path) -> None:
    choice = f"{group}={option}"
    cfg = compose_config([choice, *ONE_RUN_OF.get(choice, [])], tmp_path)
    assert cfg.hydra.runtime.choices[group] == option
    resolved = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    for target in targets(resolved):  # and every class or builder it names exists
        assert _locate(target) is not None, target


def targets(node) -> list[str]:
    if isinstance(node, dict):
        found = [node["_target_"]] if isinstance(node.get("_target_"), str) else []
        return found + [t for key, value in node.items() if key != "hydra" for t in targets(value)]
    if isinstance(node, list):
        return [t for item in node for t in targets(item)]
    return []


# What the README documents; Hydra's own listing of each group must hold at least these.
DOCUMENTED = {
    "model": {"gpt2", "gpt2_tiny", "mistral_lora", "mistral_tiny_lora"},
    "data": {"tinystories", "writingprompts"},
    "trainer": {"default", "cpu", "gpu", "ddp"},
    "logger": {"default", "csv", "wandb", "none"},
    "callbacks": {"default", "none"},
    "experiment": {
        "quickstart",
        "gpt2_writingprompts",
        "mistral_tinystories",
        "mistral_writingprompts",
    },
}


def test_every_documented_option_is_offered_and_composed() -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        for group, options in DOCUMENTED.items():
            assert options <= set(loader.get_group_options(group)), group
            assert options <= {option for g, option in OPTIONS if g == group}, group


def test_the_shared_data_base_is_extended_not_selected(tmp_path: Path) -> None:
    cfg = compose_config(["data=base"], tmp_path)
    with pytest.raises(MissingMandatoryValue, match="data.corpus"):
        instantiate(cfg.data)


def test_gpt2_tinystories_is_full_finetuning_of_the_hub_model(tmp_path: Path) -> None:
    cfg = compose_config(["model=gpt2", "data=tinystories"], tmp_path)
    assert cfg.model.backbone.name_or_path == "openai-community/gpt2"
    assert cfg.model.backbone.get("lora") is None
    assert cfg.model.backbone.get("quantization") is None
    assert cfg.data.corpus.source == "hub"
    assert cfg.data.corpus.hub_id == "roneneldan/TinyStories"


def test_mistral_lora_is_4bit_lora(tmp_path: Path) -> None:
    cfg = compose_config(["model=mistral_lora", "data=tinystories"], tmp_path)
    backbone = cfg.model.backbone
    assert backbone.name_or_path == "mistralai/Mistral-7B-v0.1"
    lora = instantiate(backbone.lora)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout) == (16, 16, 0.0)
    assert set(lora.target_modules) == {
        "q_proj",
        "k_proj",
        "v_proj",
        "o_proj",
        "gate_proj",
        "up_proj",
        "down_proj",
    }
    quantization = instantiate(backbone.quantization)
    assert quantization.load_in_4bit and quantization.bnb_4bit_quant_type == "nf4"
    assert quantization.bnb_4bit_use_double_quant


def test_precision_follows_the_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU host, on any host
    cfg = compose_config(["model=mistral_lora"], tmp_path)
    assert cfg.trainer.precision == "32-true"
    assert cfg.model.backbone.quantization.bnb_4bit_compute_dtype == "bfloat16"
    assert compose_config(["trainer=gpu"], tmp_path).trainer.precision == "bf16-mixed"


@pytest.mark.parametrize(
    ("gpu", "native_bf16", "precision", "compute_dtype"),
    [("A100", True, "bf16-mixed", "bfloat16"), ("T4", False, "16-mixed", "float16")],
)
def test_a_gpu_without_bf16_units_gets_fp16(
    gpu, native_bf16, precision, compute_dtype, tmp_path, monkeypatch
) -> None:
    """torch.cuda.is_bf16_supported() says yes on a T4 too, where bf16 is emulated."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(
        torch.cuda,
        "is_bf16_supported",
        lambda including_emulation=True: native_bf16 or including_emulation,
    )
    for trainer in ("default", "gpu", "ddp"):
        cfg = compose_config(["model=mistral_lora", f"trainer={trainer}"], tmp_path)
        assert cfg.trainer.precision == precision, (gpu, trainer)
        assert cfg.model.backbone.quantization.bnb_4bit_compute_dtype == compute_dtype


def test_wandb_goes_online_only_with_a_key_and_a_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert compose_config([], tmp_path).logger.wandb.offline is True
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    with socket.create_server(("127.0.0.1", 0)) as server:  # a W&B server that answers
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
        assert compose_config([], tmp_path).logger.wandb.offline is False
        monkeypatch.setenv("WANDB_MODE", "offline")
        assert compose_config([], tmp_path).logger.wandb.offline is True
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # and one that does not
    assert compose_config([], tmp_path).logger.wandb.offline is True


def test_an_entry_points_main_works_when_called_from_python(tmp_path: Path) -> None:
    """`storygen.train.main()` from a fresh interpreter resolves storygen's own resolvers
    (precision, device, W&B mode): importing the entry module registers them."""
    script = (
        "import sys\n"
        "from storygen.train import main\n"
        "sys.argv = ['train', '--cfg', 'job', '--resolve', 'model=gpt2_tiny', 'logger=wandb']\n"
        "main()\n"
    )
    result = run_python(script, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = OmegaConf.create(result.stdout)
    assert printed.trainer.precision == ("bf16-mixed" if torch.cuda.is_available() else "32-true")
    assert printed.logger.wandb.offline is True
