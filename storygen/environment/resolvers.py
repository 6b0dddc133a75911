"""The config tree and what its files need at resolve time: `.env` in the environment and
storygen's `${storygen.*:}` resolvers.

Importing this module (every entry point does) reads `.env` and registers the resolvers, so an
entry point's `main()` works however it is called: `python -m storygen.train`, or
`storygen.train.main()` from Python.
"""

from __future__ import annotations

from pathlib import Path

from dotenv import find_dotenv, load_dotenv
from omegaconf import OmegaConf

from storygen.environment.console import quiet_console
from storygen.environment.devices import (
    default_precision,
    device_of,
    gpu_precision,
    half_dtype,
    on_gpu,
)
from storygen.environment.wandb_run import (
    previous_wandb_id,
    run_group,
    run_name,
    run_tags,
    wandb_offline,
    wandb_online,
)
from storygen.errors import StorygenError


def seed_sweep(first: int, count: int) -> str:
    """`first` and the next seeds, `count` in all, as a sweep's values: 3407,3408,3409."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise StorygenError(
            f"reproduction.seeds={count!r} must be a whole number of runs, 1 or more."
        )
    return ",".join(str(first + offset) for offset in range(count))


# The config tree, by absolute path: entry points find it however they are started.
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")

RESOLVERS = {
    "storygen.default_precision": default_precision,
    "storygen.gpu_precision": gpu_precision,
    "storygen.half_dtype": half_dtype,
    "storygen.on_gpu": on_gpu,
    "storygen.device": device_of,
    "storygen.wandb_offline": wandb_offline,
    "storygen.wandb_online": wandb_online,
    "storygen.run_name": run_name,
    "storygen.run_group": run_group,
    "storygen.previous_wandb_id": previous_wandb_id,
    "storygen.run_tags": run_tags,
    "storygen.seed_sweep": seed_sweep,
}


def setup_environment() -> None:
    """Read `.env` (without overriding the shell), silence the dependencies' messages a user
    cannot act on (unless STORYGEN_VERBOSE is set) and register storygen's config resolvers."""
    load_dotenv(find_dotenv(usecwd=True), override=False)
    quiet_console()
    for name, resolver in RESOLVERS.items():
        OmegaConf.register_new_resolver(name, resolver, replace=True)


setup_environment()
