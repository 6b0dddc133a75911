"""Start-up shared by the entry points: `.env`, OmegaConf resolvers, logged configs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dotenv import load_dotenv
from omegaconf import DictConfig, OmegaConf

# Keys whose values never leave the process (configs, W&B, checkpoints).
SECRET_ENV_VARS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")


def default_precision() -> str:
    """bf16 mixed precision where the GPU has it; fp32 elsewhere (bf16 matmul crawls on CPUs)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def wandb_offline() -> bool:
    """Online only when asked (WANDB_MODE=online) or when a key is configured; never prompt."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode:
        return mode != "online"
    return not os.environ.get("WANDB_API_KEY")


def run_name(override_dirname: str = "") -> str | None:
    """Name a run after the overrides that made it (`model=gpt2,data=tinystories`)."""
    return override_dirname or None


def previous_wandb_id(output_dir: str) -> str | None:
    """The W&B run id already in this run dir, so a resumed run continues the same W&B run
    (W&B dirs end in `-<id>`: `wandb/offline-run-20261128_120000-abc123`)."""
    runs = sorted(Path(output_dir).glob("wandb/*run-*-*"), key=lambda path: path.stat().st_mtime)
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


def run_group(task_name: str) -> str:
    """The jobs of one sweep share a W&B group named after the sweep; a single run is
    grouped by its task."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        sweep_dir = Path(HydraConfig.get().sweep.dir)
        return f"{task_name}-{sweep_dir.parent.name}-{sweep_dir.name}"
    return task_name


def setup_environment() -> None:
    """Read `.env` (without overriding the shell) and register storygen's config resolvers."""
    load_dotenv(override=False)
    resolvers = {
        "storygen.default_precision": default_precision,
        "storygen.wandb_offline": wandb_offline,
        "storygen.run_name": run_name,
        "storygen.run_group": run_group,
        "storygen.previous_wandb_id": previous_wandb_id,
    }
    for name, resolver in resolvers.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)


def loggable_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data for loggers, with any secret's value masked."""
    secrets = {os.environ[key] for key in SECRET_ENV_VARS if os.environ.get(key)}

    def mask(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: mask(item) for key, item in value.items()}
        if isinstance(value, list):
            return [mask(item) for item in value]
        if isinstance(value, str) and any(secret in value for secret in secrets):
            return "***"
        return value

    config = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return mask(config)
