"""Find what a finished run left behind: its config and its trained model.

Shared by the entry points that start from a checkpoint (export, evaluate, generate). A
checkpoint file is rebuilt with the config of the run that wrote it (`<run>/.hydra`); a
Hugging Face directory (an export) is loaded with plain transformers/peft.
"""

from __future__ import annotations

from pathlib import Path

import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import HalfPrecision, MixedPrecision, Precision
from omegaconf import DictConfig, OmegaConf, open_dict
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from storygen.environment.devices import default_precision, enable_tf32, half_dtype
from storygen.errors import StorygenError
from storygen.models.loader import load_adapter, prepare_tokenizer


def run_dir_of(ckpt_path: Path) -> Path:
    """`<run>/checkpoints/last.ckpt` -> `<run>`."""
    return ckpt_path.resolve().parent.parent


def saved_run_config(ckpt_path: Path) -> DictConfig | None:
    """The config of the run that wrote the checkpoint, its paths pointing at that run."""
    saved = run_dir_of(ckpt_path) / ".hydra" / "config.yaml"
    if not saved.is_file():
        return None
    run_cfg = OmegaConf.load(saved)
    with open_dict(run_cfg):
        run_cfg.paths.output_dir = str(run_dir_of(ckpt_path))
    return run_cfg


def check_exists(ckpt_path: str) -> Path:
    path = Path(ckpt_path)
    if not path.exists():
        raise StorygenError(
            f"checkpoint {ckpt_path} does not exist; pass ckpt_path=<run dir>/checkpoints/"
            "last.ckpt or an exported directory (<run dir>/export/model or export/adapter)."
        )
    return path


def model_overridden(overrides: list[str]) -> bool:
    """The command line sets `model=...` or a `model.*` key."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return any(o.key_or_group == "model" or o.key_or_group.startswith("model.") for o in parsed)


def trained_model_config(
    path: Path, model_cfg: DictConfig, model_override: bool | None = None
) -> DictConfig:
    """The model config a checkpoint is rebuilt with: its run's (`<run>/.hydra/config.yaml`),
    else `model_cfg`. A command passes `model_override` (whether its command line set model):
    a run's own config cannot be overridden, and without one the model must be named, rather
    than fall back to the command's default (GPT-2 from the hub)."""
    run_cfg = saved_run_config(path)
    saved = run_dir_of(path) / ".hydra" / "config.yaml"
    if run_cfg is not None and model_override:
        raise StorygenError(
            f"model=... cannot apply: {path} is rebuilt with the model its run trained "
            f"({saved}); drop the model override (to score another model, pass its checkpoint)."
        )
    if run_cfg is None and model_override is False:
        raise StorygenError(
            f"{path} has no run config beside it ({saved} is missing), so its model is "
            "unknown; pass the checkpoint inside its run dir, or name the model it was "
            "trained as (e.g. model=gpt2_tiny)."
        )
    return run_cfg.model if run_cfg is not None else model_cfg


def load_trained_model(ckpt_path: str, model_cfg: DictConfig, model_override: bool | None = None):
    """A StoryLM rebuilt from the run's model config (or `model_cfg`), checkpoint loaded."""
    path = check_exists(ckpt_path)
    model = instantiate(trained_model_config(path, model_cfg, model_override))
    model.load_checkpoint_weights(path)
    return model


def load_for_generation(
    ckpt_path: str,
    model_cfg: DictConfig,
    base_model: str | None = None,
    precision: str | None = None,
    model_override: bool | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Precision]:
    """Backbone and tokenizer from a Lightning checkpoint or an exported HF directory, the
    backbone cast for `precision` (null: the run's, see `run_precision`), and that precision's
    plugin: generate and score under its `forward_context()`, as the run's test stage did."""
    plugin = precision_plugin(run_precision(ckpt_path, precision))  # refused before the load
    path = check_exists(ckpt_path)
    backbone, tokenizer = _load_backbone(path, model_cfg, base_model, model_override)
    return plugin.convert_module(backbone), tokenizer, plugin


def _load_backbone(
    path: Path, model_cfg: DictConfig, base_model: str | None, model_override: bool | None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    if path.is_file():
        model = load_trained_model(str(path), model_cfg, model_override)
        return on_gpu_if_any(model.backbone), model.tokenizer
    if model_override:
        raise StorygenError(
            f"model=... cannot apply: {path} is an exported model, loaded as it was saved; "
            "drop the model override."
        )
    tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(path))
    # half precision on a GPU: a 7B model's fp32 weights alone (29 GB) would not fit most cards
    dtype = getattr(torch, half_dtype()) if torch.cuda.is_available() else torch.float32
    if not (path / "adapter_config.json").is_file():
        backbone = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    else:
        backbone = load_adapter(path, base_model, dtype)
    return on_gpu_if_any(backbone), tokenizer


def on_gpu_if_any(backbone: PreTrainedModel) -> PreTrainedModel:
    """Generate and score on the GPU where there is one; 4-bit weights already sit on the
    device bitsandbytes quantized them onto."""
    if not torch.cuda.is_available():
        return backbone
    enable_tf32()
    if not getattr(backbone, "is_loaded_in_4bit", False):
        return backbone.to("cuda")
    return backbone


# the short names Lightning also accepts for trainer.precision
PRECISION_NAMES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed"}


def run_precision(ckpt_path: str, requested: str | None) -> str:
    """The precision to score and generate in, so that evaluate gives the numbers of the run's
    own test stage (bf16 autocast on a GPU, not fp32): the one asked for, else the
    `trainer.precision` of the checkpoint's run, else this machine's default (an export)."""
    if requested is not None:
        return str(requested)
    path = check_exists(ckpt_path)
    run_cfg = saved_run_config(path) if path.is_file() else None
    saved = OmegaConf.select(run_cfg, "trainer.precision") if run_cfg is not None else None
    return str(saved) if saved is not None else default_precision()


def precision_plugin(precision: str) -> Precision:
    """Lightning's plugin for a precision: its `convert_module` and `forward_context` are the
    cast and the autocast the run's test stage ran the model under."""
    name = PRECISION_NAMES.get(precision, precision)
    if name in ("bf16-mixed", "16-mixed"):
        return MixedPrecision(name, "cuda" if torch.cuda.is_available() else "cpu")
    if name in ("bf16-true", "16-true"):
        return HalfPrecision(name)
    if name == "32-true":
        return Precision()
    raise StorygenError(
        f"precision={precision} is not known; use 32-true, bf16-mixed, 16-mixed, bf16-true or "
        "16-true, or leave it null for the precision the checkpoint's run tested in."
    )
