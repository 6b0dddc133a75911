"""Secrets (API keys, a database password) stay in the process: every config, name and record
a run writes passes through `mask_secrets` first."""

from __future__ import annotations

import os
from typing import Any

from dotenv import dotenv_values, find_dotenv
from omegaconf import DictConfig, OmegaConf

# Keys whose values never leave the process (configs, W&B, checkpoints).
# STORYGEN_OPTUNA_STORAGE: a study's database URL, with its password.
SECRET_ENV_VARS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "STORYGEN_OPTUNA_STORAGE")


def secret_values() -> set[str]:
    """Values that must never be written: the known secret variables, and every value set
    in `.env` (short ones such as a project name excepted, or half the config would mask)."""
    values = {os.environ[key] for key in SECRET_ENV_VARS if os.environ.get(key)}
    values |= {value for value in dotenv_values(find_dotenv(usecwd=True)).values() if value}
    return {value for value in values if len(value) >= 12}


def mask_secrets(value: Any, secrets: set[str] | None = None) -> Any:
    """`value` (plain data) with every string that holds a secret replaced by `***`."""
    secrets = secret_values() if secrets is None else secrets
    if isinstance(value, dict):
        return {key: mask_secrets(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item, secrets) for item in value]
    if isinstance(value, str) and any(secret in value for secret in secrets):
        return "***"
    return value


def loggable_config(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain data for loggers, with any secret's value masked."""
    return mask_secrets(OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False))
