"""Optuna searches through the real CLI on real databases: a study that survives a kill and
continues with the same command, pruning, two workers on one PostgreSQL study, bad input.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from storygen.errors import StorygenError
from storygen.sweeps.search_space import parse_search_space
from storygen.sweeps.study import check_search_space, open_storage, open_study
from tests.conftest import ROOT, compose_config, run_module
from tests.services import postgres_server  # noqa: F401 (a fixture)
from tests.test_sweeps import SWEEP_RUN, compare, run_json

SEARCH = [
    *SWEEP_RUN,
    "model=gpt2_tiny",
    "data.corpus.source=sample",
    "hparams_search=gpt2_optuna",
    "hydra.sweeper.sampler.n_startup_trials=1",  # TPE proper from the second trial on
    "hydra.sweeper.heartbeat_interval=1",
    "hydra.sweeper.grace_period=3",
]


def search_args(cwd: Path, *args: str) -> list[str]:
    """`storygen.train`'s arguments for a multirun with its outputs under `cwd`."""
    return ["-m", *args, f"paths.root_dir={cwd}"]


def train_command(cwd: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "storygen.train", *search_args(cwd, *args)]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def run_search(cwd: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    result = run_module(
        "storygen.train",
        *search_args(cwd, *SEARCH, *args),
        cwd=cwd,
        timeout=900,
        env=extra_env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def load(url: str, name: str = "gpt2_search") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def trial_dirs(root: Path) -> dict[int, list[Path]]:
    """Each trial number's job dirs, over every sweep dir under root/multirun/<date>/."""
    found: dict[int, list[Path]] = {}
    for job in root.glob("multirun/*-*-*/*/*"):
        if job.name.isdigit() and (job / ".hydra").is_dir():
            found.setdefault(int(job.name), []).append(job)
    return found


@pytest.mark.slow
def test_a_killed_search_continues_with_the_same_command(tmp_path):
    args = ("hydra.sweeper.n_trials=3", "hydra.sweeper.pruner=null")
    first = subprocess.Popen(
        train_command(tmp_path, *SEARCH, *args),
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:  # kill the whole sweep, hard, once trial 2 has started
        while not list(tmp_path.glob("multirun/*-*-*/*/2/.hydra")) and first.poll() is None:
            time.sleep(0.5)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    time.sleep(4)  # trial 2's heartbeat goes stale (grace_period=3)
    run_search(tmp_path, *args)  # the same command again

    url = f"sqlite:///{tmp_path}/multirun/optuna/gpt2_search.db"
    trials = load(url).get_trials()
    states = [t.state for t in trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL, TrialState.COMPLETE]
    # the killed trial is re-queued with its parameters; n_trials counts the retry, not both
    assert trials[3].params == trials[2].params
    assert trials[3].system_attrs["failed_trial"] == 2  # RetryHeartbeatStaleTrialCallback's mark

    dirs = trial_dirs(tmp_path)
    first_sweep = dirs[0][0].parent
    assert dirs[1][0].parent == dirs[2][0].parent == first_sweep
    # trials 0 and 1 were kept, not re-run; the retry ran in the second sweep's own dir
    assert sorted(dirs) == [0, 1, 2, 3] and all(len(dirs[n]) == 1 for n in range(4))
    assert dirs[3][0].parent != first_sweep
    for trial in (trials[n] for n in (0, 1, 3)):
        record = run_json(dirs[trial.number][0])
        assert record["status"] == "completed"
        assert record["objective"] == pytest.approx(trial.value, rel=1e-6)
        assert f"optuna_trial={trial.number}" in record["overrides"]
        (wandb_run,) = dirs[trial.number][0].glob("wandb/offline-run-*/run-*.wandb")
        assert b"train-gpt2_search" in wandb_run.read_bytes()  # one W&B group for the study

    # Trial 1 came from TPE proper, not its random start-up: the same sampler replays it,
    # a random sampler with the same seed does not.
    def replay(sampler: optuna.samplers.BaseSampler) -> dict:
        study = optuna.create_study(sampler=sampler)
        study.tell(study.ask(trials[0].distributions), trials[0].value)
        return study.ask(trials[1].distributions).params

    assert replay(optuna.samplers.TPESampler(seed=3407, n_startup_trials=1)) == trials[1].params
    assert replay(optuna.samplers.RandomSampler(seed=3407)) != trials[1].params


@pytest.mark.slow
@pytest.mark.smoke
def test_a_lagging_trial_is_pruned_and_recorded_as_pruned(tmp_path):
    url = f"sqlite:///{tmp_path}/study.db"
    study = optuna.create_study(study_name="gpt2_search", storage=url)
    fixed = {"model.scheduler.num_warmup_steps": 0, "model.optimizer.weight_decay": 0.0}
    study.enqueue_trial({"model.optimizer.lr": 3e-3, **fixed})  # learns
    study.enqueue_trial({"model.optimizer.lr": 1e-5, **fixed})  # lags at the first validation
    sweep_dir = tmp_path / "multirun" / "2026-11-30" / "12-00-00"
    run_search(
        tmp_path,
        "data.max_train_samples=32",
        "trainer.val_check_interval=2",  # validations at steps 2 and 4
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.pruner.n_startup_trials=1",
        f"hydra.sweeper.storage={url}",
        "logger=default",
        f"hydra.sweep.dir={sweep_dir}",
    )
    complete, pruned = load(url).get_trials()
    assert complete.state == TrialState.COMPLETE and pruned.state == TrialState.PRUNED
    assert sorted(complete.intermediate_values) == [2, 4]
    assert list(pruned.intermediate_values) == [2]
    assert pruned.intermediate_values[2] > complete.intermediate_values[2]

    record = run_json(sweep_dir / "1")
    assert record["status"] == "pruned" and "step 2" in record["error"]
    csv_rows = (sweep_dir / "1" / "csv" / "metrics.csv").read_text().splitlines()
    val_column = csv_rows[0].split(",").index("val/loss")
    assert sum(1 for row in csv_rows[1:] if row.split(",")[val_column]) == 1  # stopped at step 2
    assert not (sweep_dir / "1" / "generations" / "test.jsonl").exists()
    wandb_run = next((sweep_dir / "1").glob("wandb/offline-run-*/run-*.wandb")).read_bytes()
    assert b'"pruned"' in wandb_run  # the run summary's status
    assert run_json(sweep_dir / "0")["status"] == "completed"

    report = compare(str(sweep_dir))
    assert report.returncode == 0, report.stderr
    text = (sweep_dir / "compare" / "report.md").read_text()
    row = "| 1 | `model.optimizer.lr=1e-05` `optuna_trial=1` | pruned: pruned by Optuna at step 2"
    assert row in text
    assert "2 trials, direction minimize: 1 complete, 1 pruned." in text
    assert "](optuna_history.png)" in text


@pytest.mark.slow
def test_two_workers_share_one_postgres_study(tmp_path, postgres_server):  # noqa: F811
    storage = {"STORYGEN_OPTUNA_STORAGE": postgres_server.url}
    command = train_command(tmp_path, *SEARCH, "hydra.sweeper.n_trials=4", "logger=default")
    workers = [
        subprocess.Popen(command, cwd=tmp_path, env=env(**storage), stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=900)
        assert worker.returncode == 0, stderr[-4000:]

    trials = load(postgres_server.url).get_trials()
    # each worker asks while the study holds fewer than n_trials: at most one extra each
    assert 4 <= len(trials) <= 5
    assert [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    dirs = trial_dirs(tmp_path)
    assert sorted(dirs) == [t.number for t in trials]
    assert len({d[0].parent for d in dirs.values()}) == 2  # both workers ran trials
    for trial in trials:
        (job,) = dirs[trial.number]
        record = run_json(job)
        if trial.state == TrialState.COMPLETE:
            assert record["objective"] == pytest.approx(trial.value, rel=1e-6)
        else:
            assert record["status"] == "pruned"
    # the database password is in no file the sweeps wrote (configs, run.json, W&B, logs)
    password = postgres_server.password.encode()
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and password in p.read_bytes()]
    assert leaks == []


# --- bad input: one error line, before any trial trains ------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url", "hydra.sweeper.storage=<malformed URL> cannot be opened"),
        ("postgresql+psycopg://me:hunter2hunter2@127.0.0.1:1/db", "cannot be opened"),
    ],
)
def test_a_bad_storage_url_is_one_error(url, expected):
    with pytest.raises(StorygenError, match=expected) as error:
        open_storage(url)
    assert "hunter2" not in str(error.value)


def test_a_study_stored_with_another_direction_is_refused(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/study.db")
    optuna.create_study(study_name="search", storage=storage, direction="maximize")
    with pytest.raises(StorygenError, match="direction maximize, not minimize"):
        open_study(storage, "search", "minimize")


@pytest.mark.parametrize(
    ("search", "model"), [("gpt2_optuna", "gpt2_tiny"), ("lora_optuna", "mistral_tiny_lora")]
)
def test_each_search_names_keys_its_model_has(tmp_path, search, model):
    cfg = compose_config([f"hparams_search={search}", f"model={model}"], tmp_path)
    params = [f"{key}={value}" for key, value in cfg.hydra.sweeper.params.items()]
    space, fixed = parse_search_space(params)
    assert len(space) >= 3 and fixed == []
    check_search_space(space, cfg, cfg.hydra.runtime.choices)
    with pytest.raises(StorygenError, match="model.optimizer.lrr is not a key of the config"):
        check_search_space({"model.optimizer.lrr": None}, cfg, cfg.hydra.runtime.choices)


@pytest.mark.slow
def test_a_search_over_a_missing_key_stops_before_any_trial(tmp_path):
    result = run_module(
        "storygen.train",
        *search_args(tmp_path, *SEARCH, "model.optimizer.lrr=interval(1e-5,1e-3)"),
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        "error: hydra.sweeper.params: model.optimizer.lrr is not a key of the config; check its "
        "spelling (`python -m storygen.train --cfg job` prints the config) or add it with "
        "+model.optimizer.lrr."
    ]
    assert trial_dirs(tmp_path) == {}


def test_a_storage_url_from_the_environment_is_masked_in_logged_configs(tmp_path, monkeypatch):
    from storygen.environment.secrets import loggable_config

    url = "postgresql+psycopg://me:s3cret-pass@db.example:5432/optuna"
    monkeypatch.setenv("STORYGEN_OPTUNA_STORAGE", url)
    cfg = compose_config(
        ["hparams_search=gpt2_optuna", "+study_db=${oc.env:STORYGEN_OPTUNA_STORAGE}"], tmp_path
    )
    assert cfg.study_db == url and cfg.hydra.sweeper.storage == url
    assert loggable_config(cfg)["study_db"] == "***"
    assert "s3cret-pass" not in str(loggable_config(cfg))
