"""How a run shows up on W&B: online or offline, its name, its group and, on resume, its id.
Each is a config resolver (conf/logger/wandb.yaml), so the run's config records it."""

from __future__ import annotations

import logging
import os
import socket
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from storygen.environment.secrets import secret_values

log = logging.getLogger(__name__)


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
            "(upload later with `python -m storygen.sync <run-dir>`)",
            server,
        )
        return True
    return False


def wandb_online() -> bool:
    """The opposite of `wandb_offline`: W&B's logger uploads checkpoints only online."""
    return not wandb_offline()


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


def previous_wandb_id(output_dir: str | None) -> str | None:
    """The W&B run id already in this run dir, so a resumed run continues the same W&B run
    (W&B dirs end in `-<id>`: `wandb/offline-run-20261128_120000-abc123`). There is no run dir
    when Hydra only prints the config (`--cfg job --resolve`)."""
    if not output_dir:
        return None
    runs = sorted(Path(output_dir).glob("wandb/*run-*-*"), key=lambda path: path.stat().st_mtime)
    return runs[-1].name.rsplit("-", 1)[-1] if runs else None


def run_group(task_name: str) -> str:
    """The jobs of one sweep share a W&B group named after the sweep, the trials of an
    Optuna study (over resumed sweeps and workers) one named after the study; a single run is
    grouped by its task."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return sweep_group(task_name, HydraConfig.get())
    return task_name


def sweep_group(task_name: str, hydra: Any) -> str:
    """The group of a sweep's jobs, from its Hydra config (live, or a job's saved one)."""
    study = hydra.sweeper.get("study_name")
    if study:
        return f"{task_name}-{study}"
    sweep_dir = Path(hydra.sweep.dir)
    return f"{task_name}-{sweep_dir.parent.name}-{sweep_dir.name}"


def offline_runs(dirs: list[Path]) -> dict[str, list[Path]]:
    """The offline W&B run folders under run or sweep dirs, by run id, each id's oldest first.
    A resumed run adds a folder with the same id (`offline-run-<start time>-<id>`); the names'
    start times order them."""
    runs: dict[str, list[Path]] = {}
    for folder in sorted(
        {path for d in dirs for path in Path(d).glob("**/wandb/offline-run-*-*") if path.is_dir()},
        key=lambda path: (path.name.split("-")[2], path.stat().st_mtime),
    ):
        runs.setdefault(folder.name.rsplit("-", 1)[-1], []).append(folder)
    return runs


def sync_commands(runs: dict[str, list[Path]], append: bool) -> list[list[str]]:
    """`wandb sync` commands that upload every run with its whole history. wandb up to 0.29
    syncs each folder as the whole run, so a resumed run's later folder replaces the earlier
    history unless it is synced after it with `--append`; later wandb has no `--append` and
    syncs the folders of one run in order of start time when given together."""
    commands = []
    for run_id, folders in runs.items():
        if not append:
            commands.append(["wandb", "sync", *map(str, folders)])
            continue
        commands.append(["wandb", "sync", str(folders[0])])
        commands += [["wandb", "sync", "--append", "--id", run_id, str(f)] for f in folders[1:]]
    return commands


def sync_has_append() -> bool:
    """Whether this wandb's `wandb sync` takes `--append` (its own help says)."""
    import subprocess
    import sys

    help_text = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--help"], capture_output=True, text=True
    ).stdout
    return "--append" in help_text


def run_tags(tags: list[str] | None, model: str | None = None, data: str | None = None) -> Any:
    """The run's tags with `model:<choice>` and `data:<choice>` added, so the runs table
    filters by what was trained on what whatever the experiment's own tags say. A ListConfig:
    OmegaConf.resolve (`--cfg job --resolve`) cannot put a plain list in the node."""
    from omegaconf import OmegaConf

    tagged = list(tags or [])
    for group, choice in (("model", model), ("data", data)):
        if choice and f"{group}:{choice}" not in tagged:
            tagged.append(f"{group}:{choice}")
    return OmegaConf.create(tagged)


def dashboard_keys(cfg: Any) -> dict[str, Any]:
    """Scalar keys for the dashboard to group, filter and plot by, beside the nested config:
    `choices`, Hydra's choice of each config group (model, data, trainer, experiment, ...),
    and `sweep`, the keys the multirun or Optuna search varied with this job's typed value
    (a group's choice for a group), flat (`sweep.model.optimizer.lr`), so parallel
    coordinates and parameter importance need not search hundreds of fixed keys."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    if not HydraConfig.initialized():
        return {}
    hydra = HydraConfig.get()
    choices = {
        group: choice
        for group, choice in OmegaConf.to_container(hydra.runtime.choices).items()
        if group != "hydra" and not group.startswith("hydra/")
    }
    keys = {"choices": choices}
    if hydra.mode == RunMode.MULTIRUN:
        keys["sweep"] = {
            key: choices[key] if key in choices else plain(OmegaConf.select(cfg, key))
            for key in swept_keys(hydra)
        }
    return keys


def plain(value: Any) -> Any:
    from omegaconf import Container, OmegaConf

    return OmegaConf.to_container(value, resolve=True) if isinstance(value, Container) else value


def swept_keys(hydra: Any) -> list[str]:
    """The keys a sweep varies: its sweeper's `params` (a search space config's) and, from the
    sweep's `multirun.yaml`, the command line's sweep overrides (`lr=1e-3,3e-3`,
    `interval(...)`, `choice(...)`), in Hydra's own grammar."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    params = hydra.sweeper.get("params")
    specs = [f"{key}={value}" for key, value in (params or {}).items()]
    multirun = Path(hydra.sweep.dir) / "multirun.yaml"
    if multirun.is_file():
        saved = OmegaConf.load(multirun)
        specs += OmegaConf.to_container(saved.hydra.overrides.task, resolve=False)
    keys = []
    for override in OverridesParser.create().parse_overrides(specs):
        if override.is_sweep_override() and override.key_or_group not in keys:
            keys.append(override.key_or_group)
    return keys
