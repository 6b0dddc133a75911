"""Start-up shared by the entry points: `.env`, OmegaConf resolvers, logged configs."""

from __future__ import annotations

import logging
import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from dotenv import dotenv_values, find_dotenv, load_dotenv
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

# The config tree, by absolute path: entry points find it however they are started
# (`python -m storygen.train`, or `storygen.train.main()` called from Python).
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# Keys whose values never leave the process (configs, W&B, checkpoints).
# STORYGEN_OPTUNA_STORAGE: a study's database URL, with its password.
SECRET_ENV_VARS = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "STORYGEN_OPTUNA_STORAGE")


def default_precision() -> str:
    """Mixed precision on a GPU, fp32 on a CPU (bf16 matmul crawls there)."""
    import torch

    return gpu_precision() if torch.cuda.is_available() else "32-true"


def gpu_precision() -> str:
    """bf16 mixed precision, or fp16 mixed on a GPU without bf16 units (T4, V100): torch's
    default check also says yes where bf16 is only emulated, many times slower."""
    return "16-mixed" if gpu_lacks_bf16() else "bf16-mixed"


def half_dtype() -> str:
    """The compute dtype of 4-bit layers: bfloat16, or float16 on a GPU without bf16."""
    return "float16" if gpu_lacks_bf16() else "bfloat16"


def gpu_lacks_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False)


def on_gpu(accelerator: str = "auto") -> bool:
    """For settings only a GPU has, such as AdamW's fused CUDA kernel (`fused: true`): the
    trainer's accelerator decides (`trainer=cpu` on a GPU host trains on the CPU)."""
    return device_of(accelerator) == "cuda"


def device_of(accelerator: str = "auto") -> str:
    """The device a Lightning accelerator name trains on: `cuda` or `cpu` (`mps` as given).

    4-bit weights are quantized while loading, onto their final device, so the loader must
    know the trainer's device before the trainer moves anything: a CUDA host running
    `trainer=cpu` (the tests) keeps them on the CPU.
    """
    import torch

    accelerator = str(accelerator).lower()
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "mps" if accelerator == "mps" else "cpu"


def enable_tf32() -> None:
    """TF32 for the fp32 matmuls mixed precision leaves on a CUDA GPU. CUDA's switch only:
    the precision-wide `torch.set_float32_matmul_precision` would change CPU matmuls too."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True


def wandb_offline() -> bool:
    """Online only when asked (WANDB_MODE=online) or when a key is configured, and the W&B
    server answers; never prompt. Without a connection the run is logged offline, and says so,
    rather than failing or waiting on W&B's own minute-long timeout."""
    mode = os.environ.get("WANDB_MODE", "").strip().lower()
    if mode and mode != "online":
        return True
    if not mode and not os.environ.get("WANDB_API_KEY"):
        return True
    server = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    if not reachable(server):
        log.warning(
            "W&B: %s cannot be reached; logging offline under the run dir instead "
            "(upload later with `wandb sync <run-dir>/wandb/offline-run-*`)",
            server,
        )
        return True
    return False


@lru_cache(maxsize=8)
def reachable(url: str, timeout_s: float = 3.0) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def run_name(override_dirname: str = "") -> str | None:
    """Name a run after the overrides that made it (`model=gpt2,data=tinystories`). Hydra
    writes override values resolved, so `+key=${oc.env:WANDB_API_KEY}` would put the key
    into the name W&B shows: secrets are masked."""
    for secret in secret_values():
        override_dirname = override_dirname.replace(secret, "***")
    return override_dirname or None


def previous_wandb_id(output_dir: str) -> str | None:
    """The W&B run id already in this run dir, so a resumed run continues the same W&B run
    (W&B dirs end in `-<id>`: `wandb/offline-run-20261128_120000-abc123`)."""
    runs = sorted(Path(output_dir).glob("wandb/*run-*-*"), key=lambda path: path.stat().st_mtime)
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


def run_group(task_name: str) -> str:
    """The jobs of one sweep share a W&B group named after the sweep, the trials of an
    Optuna study (over resumed sweeps and workers) one named after the study; a single run is
    grouped by its task."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        study = HydraConfig.get().sweeper.get("study_name")
        if study:
            return f"{task_name}-{study}"
        sweep_dir = Path(HydraConfig.get().sweep.dir)
        return f"{task_name}-{sweep_dir.parent.name}-{sweep_dir.name}"
    return task_name


def setup_environment() -> None:
    """Read `.env` (without overriding the shell) and register storygen's config resolvers."""
    load_dotenv(find_dotenv(usecwd=True), override=False)
    resolvers = {
        "storygen.default_precision": default_precision,
        "storygen.gpu_precision": gpu_precision,
        "storygen.half_dtype": half_dtype,
        "storygen.on_gpu": on_gpu,
        "storygen.device": device_of,
        "storygen.wandb_offline": wandb_offline,
        "storygen.run_name": run_name,
        "storygen.run_group": run_group,
        "storygen.previous_wandb_id": previous_wandb_id,
    }
    for name, resolver in resolvers.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)


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
