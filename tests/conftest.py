"""Compose the real conf/ tree with test overrides: tiny model, CPU, outputs under tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from storygen.environment.allocator import fast_allocator_env, restart_with
from storygen.environment.resolvers import setup_environment
from tests import forked_cli

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"

# Under xdist each test process gets its share of the cores: torch's default (one thread per
# core in every process) oversubscribes them, and OpenMP threads spin waiting for each other.
if workers := os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // int(workers))))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.pop("WANDB_API_KEY", None)
setup_environment()


def pytest_configure(config: pytest.Config) -> None:
    """Run the suite under tcmalloc, as storygen's entry points run: the in-process training
    tests take about a third less time than under glibc's malloc. pytest restarts once, before
    torch is loaded (STORYGEN_ALLOCATOR=system keeps glibc's); xdist workers inherit it."""
    if config.getoption("dist", None) == "loadgroup" and pytest.version_tuple[:2] >= (9, 2):
        # the SLURM tests then run in two test processes at once, shared runs train twice
        raise pytest.UsageError(
            f"pytest {pytest.__version__} breaks xdist's --dist loadgroup (pytest-xdist#1386): "
            "pip install 'pytest<9.2', or run with -n 0"
        )
    env = None if "torch" in sys.modules else fast_allocator_env()
    if env is not None:
        # give the terminal back first: pytest has put its own files under stdout/stderr
        config.pluginmanager.getplugin("capturemanager").stop_global_capturing()
        restart_with(env)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow tests first, the SLURM ones (one xdist group, mostly waiting on the scheduler)
    first of all: the test processes then finish together instead of one waiting on the
    other's last long test. A module moves as a whole, at the rank of its slowest test: its
    module-scoped fixtures (a trained run, a study) are built once, not once per rank."""

    def rank(item: pytest.Item) -> int:
        group = item.get_closest_marker("xdist_group")
        if group and group.args == ("slurm",):
            return 0
        return 1 if item.get_closest_marker("slow") else 2

    module_rank: dict[str, int] = {}
    for item in items:
        module_rank[item.module.__name__] = min(
            module_rank.get(item.module.__name__, 2), rank(item)
        )
    order = {id(item): index for index, item in enumerate(items)}
    items.sort(key=lambda item: (module_rank[item.module.__name__], order[id(item)]))


@pytest.fixture(autouse=True)
def no_wandb_data_dir_after_each_test():
    """A run trained in this process points W&B's data dir at its own run dir, in the process's
    environment (SummarizingWandbLogger); the commands a later test starts would inherit it,
    and stage their tables in that run's dir."""
    yield
    os.environ.pop("WANDB_DATA_DIR", None)


# Small and fast: a 2-layer GPT-2 on a slice of the bundled sample, one short epoch.
TINY_RUN = [
    "model=gpt2_tiny",
    "data=tinystories",
    "data.corpus.source=sample",
    "data.max_train_samples=48",
    "data.max_eval_samples=8",
    "data.batch_size=8",
    "data.max_length=128",
    "data.num_workers=0",
    "trainer=cpu",
    "trainer.max_epochs=1",
    "trainer.log_every_n_steps=1",
    "trainer.enable_progress_bar=false",
    "callbacks.story_metrics.num_prompts=4",
    "callbacks.story_metrics.generation.max_new_tokens=12",
]


def compose_config(
    overrides: list[str], output_dir: Path, config_name: str = "train"
) -> DictConfig:
    """The config a command line would get, with Hydra's runtime set as in a real run."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(output_dir)
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture
def tiny_run_config(tmp_path: Path) -> DictConfig:
    return compose_config(TINY_RUN, tmp_path)


# The shared run: TINY_RUN on 240 stories, so one epoch is 30 steps, long enough for the loss
# to fall clearly; CSV and offline W&B logging, test stage and export on (the defaults).
TRAINED_RUN = [
    *(o for o in TINY_RUN if not o.startswith("data.max_train_samples")),
    "data.max_train_samples=240",
]


@dataclass(frozen=True)
class TrainedRun:
    """A finished training run: its dir (checkpoints/, csv/, wandb/, export/, run.json),
    the config it ran with and the metrics train() returned."""

    output_dir: Path
    config: DictConfig
    metrics: dict[str, float]

    @property
    def last_checkpoint(self) -> Path:
        return self.output_dir / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """ONE tiny GPT-2 trained per test session through the real train() (TRAINED_RUN), for
    every test that needs a trained run rather than to train one itself: the first test
    process (xdist worker) to ask trains it, the others wait and read it. Treat it as
    read-only: a test that writes into a run dir takes `trained_run_copy` instead. Note that
    the config's Hydra runtime is the one of this run, set again by the next compose_config."""
    from filelock import FileLock

    from storygen.train import train

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the session's dir, above each worker's own
    output_dir, metrics_file = shared / "trained-run", shared / "trained-run-metrics.json"
    with FileLock(shared / "trained-run.lock"):
        cfg = compose_config(TRAINED_RUN, output_dir)
        if not metrics_file.is_file():
            metrics_file.write_text(json.dumps(train(cfg)))
    return TrainedRun(output_dir, cfg, json.loads(metrics_file.read_text()))


@pytest.fixture
def trained_run_copy(trained_run: TrainedRun, tmp_path: Path) -> TrainedRun:
    """A private copy of the shared run, for tests that write into its dir (a resumed or
    retried run, a failed command that must leave it intact)."""
    output_dir = tmp_path / "trained-run"
    shutil.copytree(trained_run.output_dir, output_dir, symlinks=True)
    return TrainedRun(output_dir, trained_run.config, trained_run.metrics)


def run_python(
    script: str, cwd: Path = ROOT, timeout: int = 300, check: bool = False
) -> subprocess.CompletedProcess:
    """`python -c <script>` in a fresh interpreter with this checkout's storygen, its output
    captured as text: what a new process (a user's, the next run's) sees."""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=check,
    )


def run_module(
    module: str, *args: str, cwd: Path, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m <module> <args>` as a user runs it, from `cwd`, with this checkout's storygen
    (forked from a process that has done the imports: tests/forked_cli.py)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return forked_cli.run(module, list(args), cwd=cwd, env=env, timeout=timeout)
