"""The study a search runs in: where it is stored, opening it, and how many trials it holds.

A study lives in a database so a killed search continues and several workers share it:
SQLite under `multirun/optuna/` by default (nothing to start), or any SQLAlchemy URL
(PostgreSQL for many machines), best given through `STORYGEN_OPTUNA_STORAGE` so that a
password never lands in a config file.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from storygen.errors import StorygenError

# Heartbeats and their retry callback are "experimental" in Optuna since 2.8; used knowingly.
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

STORAGE_ENV = "STORYGEN_OPTUNA_STORAGE"
STORAGE_HELP = (
    "give a SQLAlchemy URL such as sqlite:////abs/path/study.db or "
    "postgresql+psycopg://user:password@host:5432/db (best in .env as STORYGEN_OPTUNA_STORAGE)"
)
# The states a trial ends in; a RUNNING one counts too (another worker is on it).
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


def storage_url(storage: str | None, root_dir: str | Path, study_name: str) -> str:
    """The given URL, else a SQLite file keyed by the study's name under the multirun root:
    every sweep gets a new timestamped dir, but the same command finds the same study."""
    if storage:
        return str(storage)
    path = Path(root_dir).resolve() / "multirun" / "optuna" / f"{study_name}.db"
    return f"sqlite:///{path}"


def shown_url(url: str) -> str:
    """The URL with its password hidden, for logs and files."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<malformed URL>"


def open_storage(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None):
    """An RDBStorage; with a heartbeat, a trial whose worker died is failed and re-queued."""
    engine_kwargs: dict[str, Any] = {}
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            # parallel local workers wait for SQLite's lock rather than fail at once
            engine_kwargs["connect_args"] = {"timeout": 60}
        if parsed.get_backend_name() == "postgresql":
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
        for attempt in range(3):
            try:
                return RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1)
                    if heartbeat_interval
                    else None,
                )
            except IntegrityError:
                # workers started together on a new database race to create Optuna's tables;
                # the loser finds them made on its next try
                if attempt == 2:
                    raise
                time.sleep(1 + attempt)
    except (SQLAlchemyError, ValueError, ImportError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorygenError(
            f"hydra.sweeper.storage={shown_url(url)} cannot be opened ({reason}); {STORAGE_HELP}."
        ) from exc


def open_study(
    storage: RDBStorage,
    study_name: str,
    direction: str,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Create the study or continue it; one stored with another direction is refused, since
    its trials' values would be read the wrong way round."""
    if direction not in ("minimize", "maximize"):
        raise StorygenError(f"hydra.sweeper.direction={direction}: use minimize or maximize.")
    names = {summary.study_name: summary for summary in optuna.get_all_study_summaries(storage)}
    if study_name in names:
        stored = [d.name.lower() for d in names[study_name].directions]
        if stored != [direction]:
            raise StorygenError(
                f"hydra.sweeper.study_name={study_name} already exists in the storage with "
                f"direction {', '.join(stored)}, not {direction}; pick another study_name "
                f"or set hydra.sweeper.direction={stored[0]}."
            )
    return optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )


def counted_trials(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The trials that count against n_trials: finished or running, less those re-queued
    (a trial whose worker died is failed, and its retry counts in its place)."""
    trials = list(trials)
    retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials} - {None}
    return [t for t in trials if t.state in COUNTED and t.number not in retried]


def check_search_space(names: Iterable[str], config: Any, groups: Mapping[str, Any]) -> None:
    """Every searched key must exist in the composed config (or be a config group): a typo
    would otherwise add a key nothing reads, and every trial would train the same model."""
    from omegaconf import OmegaConf

    missing = object()
    for name in names:
        key = name.lstrip("+~")
        if name != key or key in groups:
            continue
        if OmegaConf.select(config, key, default=missing, throw_on_missing=False) is missing:
            raise StorygenError(
                f"hydra.sweeper.params: {key} is not a key of the config; check its spelling "
                f"(`python -m storygen.train --cfg job` prints the config) or add it with +{key}."
            )


def env_storage() -> str | None:
    return os.environ.get(STORAGE_ENV) or None
