"""An Optuna sweeper for Hydra on a maintained Optuna (hydra-optuna-sweeper pins optuna<3,
which fails on SQLAlchemy 2 databases), whose studies persist, resume and run in parallel.

Each trial is one Hydra job in `<sweep dir>/<trial number>/`; the job is told its trial
(`optuna_trial=N`) so it can report validations to the pruner. A heartbeat from this process
keeps the running trials alive; when a sweep is killed, the next one on the same study fails
them and re-queues their parameters.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

if TYPE_CHECKING:
    import optuna

# Hydra imports every plugin at start-up, for every command: Optuna and storygen's sweep code
# are imported when a sweep starts, so other commands stay fast and work without them.
log = logging.getLogger(__name__)


class StoryOptunaSweeper(Sweeper):
    def __init__(
        self,
        study_name: str,
        direction: str = "minimize",
        n_trials: int = 20,
        n_jobs: int = 1,
        storage: str | None = None,
        sampler: Any = None,
        pruner: Any = None,
        params: DictConfig | None = None,
        heartbeat_interval: int = 60,
        grace_period: int = 180,
    ) -> None:
        self.study_name = study_name
        self.direction = direction
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.storage = storage
        self.sampler = sampler  # Hydra instantiated both from their _target_
        self.pruner = pruner
        self.params = params or {}
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        from storygen.errors import exit_on_user_error
        from storygen.sweeps.search_space import parse_search_space
        from storygen.sweeps.study import (
            check_search_space,
            counted_trials,
            env_storage,
            open_storage,
            open_study,
            shown_url,
            storage_url,
        )

        with exit_on_user_error():  # a bad search fails here, before any trial trains
            overrides = [f"{key}={value}" for key, value in self.params.items()] + arguments
            space, fixed = parse_search_space(overrides)
            check_search_space(space, self.config, self.config.hydra.runtime.choices)
            url = storage_url(self.storage, self.config.paths.root_dir, self.study_name)
            storage = open_storage(url, self.heartbeat_interval, self.grace_period)
            study = open_study(
                storage,
                self.study_name,
                self.direction,
                sampler=self.sampler,
                pruner=self.pruner,
            )
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(
            {
                "study_name": self.study_name,
                "direction": self.direction,
                # never a password: compare reads it from the environment as this sweep did
                "storage": shown_url(url),
                "storage_from_env": url == env_storage(),
            },
            sweep_dir / "optuna_study.yaml",
        )
        log.info("Study %s in %s (%s)", self.study_name, shown_url(url), self.direction)
        if url.startswith("sqlite") and "submitit" in type(self.launcher).__module__:
            log.warning("SQLite is unsafe for jobs on many nodes; set STORYGEN_OPTUNA_STORAGE")
        job_idx = 0
        while True:
            optuna.storages.fail_stale_trials(study)  # a killed sweep's trials: failed, re-queued
            left = self.n_trials - len(counted_trials(study.get_trials(deepcopy=False)))
            if left <= 0:
                break
            trials = [study.ask(space) for _ in range(min(self.n_jobs, left))]
            jobs = [self.job_overrides(trial, fixed) for trial in trials]
            with heartbeat(storage, trials, self.heartbeat_interval):
                returns = self.launcher.launch(jobs, initial_job_idx=job_idx)
            job_idx += len(returns)
            for trial, ret in zip(trials, returns):
                tell(study, trial, ret)
        log.info("Study %s: %d trials counted", self.study_name, self.n_trials)
        write_best(study, sweep_dir / "optimization_results.yaml")

    @staticmethod
    def job_overrides(trial: optuna.Trial, fixed: Sequence[str]) -> list[str]:
        from storygen.sweeps.search_space import as_override

        return [
            *fixed,
            *(as_override(key, value) for key, value in trial.params.items()),
            f"optuna_trial={trial.number}",
            f"hydra.sweep.subdir={trial.number}",  # one dir per trial, across resumed sweeps
        ]


def tell(study: optuna.Study, trial: optuna.Trial, ret: Any) -> None:
    """The job's value; a job that crashed, returned NaN or was pruned (it told the study
    itself) is not counted as a result."""
    from optuna.trial import TrialState

    try:
        value = float(ret.return_value)
    except Exception as exc:  # the job raised: Hydra re-raises it here
        log.warning("Trial %d failed: %s", trial.number, exc)
        value = math.nan
    if math.isnan(value):
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    else:
        study.tell(trial, value, skip_if_finished=True)


def write_best(study: optuna.Study, path: Path) -> None:
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        log.warning("Study %s has no completed trial yet", study.study_name)
        return
    best = study.best_trial
    log.info("Best trial %d: %s = %s", best.number, best.params, best.value)
    results = {"name": "optuna", "best_trial": best.number, "best_params": best.params}
    OmegaConf.save(OmegaConf.create(results | {"best_value": best.value}), path)


@contextmanager
def heartbeat(storage: Any, trials: list[optuna.Trial], interval: int) -> Iterator[None]:
    """Beat for the trials while their jobs run, whichever launcher runs them (Optuna beats
    only inside study.optimize, which an ask-and-tell sweeper does not use)."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            for trial in trials:
                storage.record_heartbeat(trial._trial_id)  # Optuna's own field; no public id
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name="optuna-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
