"""An Optuna search whose trials run as SLURM jobs, two at a time, on one shared study in
PostgreSQL: the sweeper asks for two trials, submits them as one job array, and each trial
job reports to the same study from the SLURM node.
"""

from __future__ import annotations

import re

import pytest

pytest.importorskip("hydra_plugins.storygen_sweeper", reason="storygen's Optuna sweeper")
optuna = pytest.importorskip("optuna")

from tests.services import postgres_server  # noqa: E402, F401 (a fixture)
from tests.slurm_cluster import start_slurm_cluster  # noqa: E402, F401 (a fixture)
from tests.test_slurm import (  # noqa: E402
    ON_SLURM,
    SMALL_RUN,
    job_log,
    run_json,
    stop_launched_at_end,  # noqa: F401 (a fixture)
    storygen_train,
    wait_ok,
)

# one SLURM cluster per test process: under xdist every SLURM test runs in the same worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]


def submitit_time(log: str, event: str) -> str:
    """When submitit logged an event in a job's log (`2026-11-30 12:00:00,123`)."""
    found = re.search(rf"submitit INFO \(([^)]+)\) - {event}", log)
    assert found, f"no '{event}' in the job's log"
    return found.group(1)


def test_an_optuna_search_runs_two_trials_at_once_as_slurm_jobs(
    slurm_cluster,
    postgres_server,  # noqa: F811
    tmp_path,
    launched,
):
    sweep_dir = tmp_path / "sweep"
    search = storygen_train(
        launched,
        slurm_cluster,
        tmp_path,
        "-m",
        *ON_SLURM,
        *SMALL_RUN,
        "hparams_search=gpt2_optuna",
        "hydra.sweeper.study_name=on_slurm",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.n_jobs=2",
        "logger=csv",
        f"hydra.sweep.dir={sweep_dir}",
        # sbatch passes the environment on: the trial jobs report to the same study
        env={"STORYGEN_OPTUNA_STORAGE": postgres_server.url},
    )
    wait_ok(search, tmp_path)

    study = optuna.load_study(study_name="on_slurm", storage=postgres_server.url)
    trials = study.get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    logs = []
    for trial in trials:
        record = run_json(sweep_dir / str(trial.number))
        assert record["status"] == "completed"
        assert trial.value == pytest.approx(record["metrics"]["val/loss"])
        logs.append(job_log(sweep_dir, trial.number))
    # one job array of two tasks, each started before the other had finished
    assert {log.split("job_id=")[1].split("_")[0] for log in logs} == {
        logs[0].split("job_id=")[1].split("_")[0]
    }
    first, second = logs
    assert submitit_time(first, "Starting with") < submitit_time(second, "Job completed")
    assert submitit_time(second, "Starting with") < submitit_time(first, "Job completed")
