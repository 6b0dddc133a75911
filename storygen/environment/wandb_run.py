"""How a run shows up on W&B: online or offline, its name, its group and, on resume, its id.
Each is a config resolver (conf/logger/wandb.yaml), so the run's config records it."""

from __future__ import annotations

import logging
import os
import socket
from functools import lru_cache
from pathlib import Path
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
        study = HydraConfig.get().sweeper.get("study_name")
        if study:
            return f"{task_name}-{study}"
        sweep_dir = Path(HydraConfig.get().sweep.dir)
        return f"{task_name}-{sweep_dir.parent.name}-{sweep_dir.name}"
    return task_name


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
