"""Sweeps through the real CLI: one dir, one W&B run and one run.json per job, a failed job
that does not end the sweep, a parallel launcher, and the compare report. Optuna searches:
tests/test_optuna.py.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_RUN, run_module
from tests.wandb_records import wandb_config, wandb_records

pytestmark = pytest.mark.slow

# Fewer stories than the other tests: a sweep runs several jobs.
SWEEP_RUN = [
    *[o for o in TINY_RUN if not o.startswith(("data=", "model=", "data.max_train"))],
    "data.max_train_samples=16",
    "callbacks.story_metrics.num_prompts=2",
    "callbacks.story_metrics.num_test_prompts=4",
]


def storygen_train(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m storygen.train ...` with the sweep's tiny settings; it must succeed."""
    result = run_module("storygen.train", *args, f"paths.root_dir={cwd}", cwd=cwd, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


def sweep(tmp_path: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, Path]:
    sweep_dir = tmp_path / "multirun" / "2026-11-28" / "12-00-00"
    result = storygen_train(tmp_path, "-m", *SWEEP_RUN, *overrides, f"hydra.sweep.dir={sweep_dir}")
    return result, sweep_dir


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def run_json(job_dir: Path) -> dict:
    return json.loads((job_dir / "run.json").read_text())


def compare(*args: str) -> subprocess.CompletedProcess:
    return run_module("storygen.compare", *args, cwd=ROOT, timeout=300)


def test_a_2x2_sweep_gives_four_runs_in_one_wandb_group_and_a_report(tmp_path):
    _, sweep_dir = sweep(
        tmp_path,
        "model=gpt2_tiny,mistral_tiny_lora",
        "data=tinystories,writingprompts",
        "data.corpus.source=sample",
    )
    jobs = job_dirs(sweep_dir)
    assert len(jobs) == 4
    names = set()
    for job in jobs:
        record = run_json(job)
        assert record["status"] == "completed", record
        assert record["metrics"]["val/loss"] > 0 and record["tokens_per_s"] > 0
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert (job / "csv" / "metrics.csv").is_file()
        assert (job / "generations" / "test.jsonl").is_file()
        wandb_runs = list(job.glob("wandb/offline-run-*/run-*.wandb"))
        assert len(wandb_runs) == 1, wandb_runs
        run_bytes = wandb_runs[0].read_bytes()
        # one group for the whole sweep, named after it; each run named after its overrides
        assert b"train-2026-11-28-12-00-00" in run_bytes
        # Hydra's override_dirname: the job's overrides sorted by key, paths left out
        name = ",".join(sorted(o for o in record["overrides"] if o.startswith(("model=", "data="))))
        assert name.encode() in run_bytes
        names.add(name)
    assert len(names) == 4

    result = compare(str(sweep_dir), "--wandb-workspace", "lab/storygen")
    assert result.returncode == 0, result.stderr
    report = (sweep_dir / "compare" / "report.md").read_text()
    rows = [line for line in report.splitlines() if line.startswith("| ") and "completed" in line]
    assert len(rows) == 4
    for figure in ("loss_curves.png", "rouge.png", "lengths.png"):
        assert (sweep_dir / "compare" / figure).stat().st_size > 10_000
    check_workspace_spec(sweep_dir / "compare" / "wandb_workspace.json")


def check_workspace_spec(path: Path) -> None:
    """The sweep's W&B workspace, as the spec W&B would store (offline: not saved): filtered to
    the sweep's group, parallel coordinates from exactly the swept keys into the optimized
    metric, parameter importance on it, the loss curves and the stories table."""
    spec = json.loads(path.read_text())
    assert (spec["entity"], spec["project"]) == ("lab", "storygen")
    (runset,) = spec["spec"]["section"]["runSets"]
    assert runset["filters"]["filters"] == [
        {
            "key": {"section": "run", "name": "group"},
            "op": "=",
            "value": "train-2026-11-28-12-00-00",
            "disabled": False,
        }
    ]
    panels = {}
    for section in spec["spec"]["section"]["panelBankConfig"]["sections"]:
        for panel in section["panels"]:
            panels.setdefault(panel["viewType"], []).append(panel["config"])
    (parallel,) = panels["Parallel Coordinates Plot"]
    assert [c["accessor"] for c in parallel["columns"]] == [
        "config:sweep.value.model",
        "config:sweep.value.data",
        "summary:val/loss",
    ]
    (importance,) = panels["Parameter Importance"]
    assert importance["targetKey"] == "val/loss"
    assert sorted(c["metrics"][0] for c in panels["Run History Line Plot"]) == [
        "train/loss",
        "val/loss",
    ]
    assert all(c["xAxis"] == "trainer/global_step" for c in panels["Run History Line Plot"])
    assert "val/generations" in json.dumps(panels["Weave"])


def test_a_sweeps_runs_log_their_choices_and_exactly_the_swept_keys_typed(tmp_path, monkeypatch):
    # W&B's default data dir (staged tables and artifacts): offline, nothing may land there,
    # outside the run dirs
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "home-data"))
    _, sweep_dir = sweep(tmp_path, "model=gpt2_tiny", "data=tinystories", "seed=1,2")
    assert not [p for p in (tmp_path / "home-data").rglob("*") if p.is_file()]
    for job, seed in zip(job_dirs(sweep_dir), (1, 2)):
        (run_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
        assert list((job / "wandb" / "data" / "artifacts" / "staging").iterdir())  # the tables
        # the run's .hydra configs saved with it; offline no model artifact (checkpoints,
        # export), only the generations tables W&B keeps as artifacts
        saved = run_file.parent / "files" / ".hydra"
        assert (saved / "config.yaml").read_text() == (job / ".hydra" / "config.yaml").read_text()
        assert (saved / "overrides.yaml").is_file()
        records = wandb_records(run_file)
        kinds = {r.artifact.type for r in records if r.WhichOneof("record_type") == "artifact"}
        assert kinds == {"run_table"}, kinds
        config = wandb_config(run_file)
        # what the dashboard groups by: scalar choices, and the one key the sweep varied (the
        # fixed overrides, data.max_train_samples=16 ..., are not in it), as an int
        assert config["choices"]["model"] == "gpt2_tiny"
        assert config["choices"]["data"] == "tinystories"
        assert config["choices"]["trainer"] == "cpu"
        assert config["choices"]["experiment"] is None
        assert config["sweep"] == {"seed": seed} and isinstance(config["sweep"]["seed"], int)
        (run,) = (r.run for r in wandb_records(run_file) if r.WhichOneof("record_type") == "run")
        assert list(run.tags) == ["dev", "model:gpt2_tiny", "data:tinystories"]


def test_a_failing_job_does_not_end_a_parallel_sweep(tmp_path):
    # data.max_length=1 is refused (a story needs at least one token and EOS)
    result, sweep_dir = sweep(
        tmp_path,
        "model=gpt2_tiny",
        "data.corpus.source=sample",
        "data.max_length=64,1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    )
    completed, failed = (run_json(job) for job in job_dirs(sweep_dir))
    assert completed["status"] == "completed"
    assert failed["status"] == "failed"
    assert "data.max_length=1 must be at least 2" in failed["error"]

    report = compare(str(sweep_dir))
    assert report.returncode == 0, report.stderr
    table = (sweep_dir / "compare" / "report.md").read_text()
    assert "failed" in table and "data.max_length=1 must be at least 2" in table


def train_cli(tmp_path: Path, *overrides: str) -> dict:
    run_dir = tmp_path / "run"
    tmp_path.mkdir()
    storygen_train(
        tmp_path,
        *SWEEP_RUN,
        "model=gpt2_tiny",
        "data.corpus.source=sample",
        "data.max_train_samples=128",
        *overrides,
        f"hydra.run.dir={run_dir}",
    )
    assert len(list(run_dir.glob("wandb/offline-run-*"))) == 1
    return run_json(run_dir)


def test_ddp_on_two_cpu_processes_learns_like_one_process(tmp_path):
    # the same 128 stories and 8 steps: 2 ranks x batch 8 against 1 process x batch 16
    single = train_cli(tmp_path / "single", "data.batch_size=16")
    assert single["status"] == "completed" and single["metrics"]["val/loss"] < 10.5
    ddp_run = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    for name, sampling in (("ddp", ()), ("ddp-grouped", ("data.group_by_length=true",))):
        ddp = train_cli(tmp_path / name, *ddp_run, *sampling)
        assert ddp["status"] == "completed", name
        assert abs(ddp["metrics"]["val/loss"] - single["metrics"]["val/loss"]) < 0.15, name
        # counted over both ranks: each story trained once, none twice
        assert ddp["train_tokens"] == single["train_tokens"], name
