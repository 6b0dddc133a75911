"""storygen on a real one-node SLURM cluster (tests/slurm_cluster.py): a sweep through Hydra's
submitit launcher, preempted and timed-out jobs that are requeued and resume exactly, DDP ranks
started by SLURM. Skipped where SLURM is not installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback

from tests.conftest import ROOT, TINY_RUN
from tests.slurm_cluster import SlurmCluster, start_slurm_cluster  # noqa: F401 (fixture)
from tests.test_sweeps import compare

# one SLURM cluster per test process: under xdist every SLURM test runs in the same worker
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]

# One CPU per job: the test node has the machine's CPUs, so two jobs run side by side.
ON_SLURM = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=3",
    "hydra.launcher.timeout_min=10",
]
SMALL_RUN = [
    *[o for o in TINY_RUN if not o.startswith("data.max_train")],
    "data.max_train_samples=16",
    "callbacks.story_metrics.num_prompts=2",
    "callbacks.story_metrics.num_test_prompts=4",
]
# One epoch of 60 steps with dropout on, so a stop lands mid-epoch and random state matters;
# 64 tokens a story, as in tests/test_resume.py: what a resume restores does not depend on it.
RESUMABLE_RUN = [
    *[o for o in TINY_RUN if not o.startswith(("data.max_train", "data.batch_size", "data.max_l"))],
    "data.max_train_samples=240",
    "data.batch_size=4",
    "data.max_length=64",
    "logger=csv",
    "callbacks.story_metrics.num_prompts=0",
    "callbacks.story_metrics.num_test_prompts=2",
    "+model.backbone.architecture.resid_pdrop=0.1",
]


class PaceFirstAttempt(Callback):
    """Slow a job's first attempt down, so SLURM's signal reaches it mid-training; the
    requeued attempt (SLURM_RESTART_COUNT set) runs at full speed."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *args) -> None:
        if not os.environ.get("SLURM_RESTART_COUNT"):
            time.sleep(self.seconds)


@pytest.fixture(name="launched")
def stop_launched_at_end() -> Iterator[list[subprocess.Popen]]:
    """Commands a test started; any still running when it ends (a failed test) are stopped."""
    processes: list[subprocess.Popen] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def storygen_train(
    launched: list[subprocess.Popen],
    cluster: SlurmCluster,
    cwd: Path,
    *args: str,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """`python -m storygen.train ...` against the cluster, in the background; output in cwd."""
    cwd.mkdir(parents=True, exist_ok=True)
    log = (cwd / "output.txt").open("w")
    launched.append(
        subprocess.Popen(
            [sys.executable, "-m", "storygen.train", *args, f"paths.root_dir={cwd}"],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**cluster.env, "PYTHONPATH": str(ROOT), **(env or {})},
        )
    )
    return launched[-1]


def wait_ok(process: subprocess.Popen, cwd: Path, timeout_s: float = 900) -> None:
    try:
        process.wait(timeout=timeout_s)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, (cwd / "output.txt").read_text()[-4000:]


def run_json(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def job_log(sweep_dir: Path, job: int, task: int = 0) -> str:
    """What a SLURM job printed (both attempts of a requeued one): submitit's log files."""
    # a job array's task n writes to .submitit/<array>_<n>/, a lone job to .submitit/<id>/
    logs = sorted(sweep_dir.glob(f".submitit/*_{job}/*_{task}_log.*"))
    if not logs and job == 0:
        logs = sorted(sweep_dir.glob(f".submitit/*/*_{task}_log.*"))
    assert logs, f"no logs of job {job} in {sweep_dir / '.submitit'}"
    return "".join(log.read_text() for log in logs)


def wait_until(condition, what: str, process: subprocess.Popen, cwd: Path, timeout_s=600):
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, (
            f"{what}: the sweep ended\n" + (cwd / "output.txt").read_text()[-4000:]
        )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def steps_logged(run_dir: Path) -> int:
    metrics = run_dir / "csv" / "metrics.csv"
    return len(metrics.read_text().splitlines()) - 1 if metrics.exists() else 0


def test_a_sweep_runs_each_job_as_a_slurm_job_with_its_own_run(slurm_cluster, tmp_path, launched):
    sweep_dir = tmp_path / "multirun" / "2026-11-30" / "12-00-00"
    sweep = storygen_train(
        launched,
        slurm_cluster,
        tmp_path,
        "-m",
        *ON_SLURM,
        *SMALL_RUN,
        "seed=1,2",
        f"hydra.sweep.dir={sweep_dir}",
    )
    wait_ok(sweep, tmp_path)
    for job in (0, 1):
        run_dir = sweep_dir / str(job)
        record = run_json(run_dir)
        assert record["status"] == "completed", record
        assert f"seed={job + 1}" in record["overrides"]
        assert len(list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))) == 1
        assert "Starting with JobEnvironment(job_id=" in job_log(sweep_dir, job)

    report = compare(str(sweep_dir))
    assert report.returncode == 0, report.stderr
    table = (sweep_dir / "compare" / "report.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and "completed" in line]
    assert len(rows) == 2


def array_task(sweep_dir: Path, job: int) -> str:
    """The SLURM id of a sweep job (`<array>_<n>`), from submitit's folder."""
    (folder,) = sweep_dir.glob(f".submitit/*_{job}")
    return folder.name


def seconds(duration: str) -> int:
    """squeue's `[days-][hours:]minutes:seconds` in seconds."""
    days, _, clock = duration.rpartition("-")
    total = 0
    for part in clock.split(":"):
        total = total * 60 + int(part)
    return total + int(days or 0) * 86400


def final_checkpoint(run_dir: Path) -> dict:
    """The checkpoint of the last step (60), written with the end-of-epoch validation."""
    (path,) = (run_dir / "checkpoints").glob("epoch_000-step_000060.ckpt")
    return torch.load(path, weights_only=False)


def largest_difference(checkpoint: dict, reference: dict) -> float:
    """The largest difference between two checkpoints' weights and optimizer states."""
    pairs = [(checkpoint["state_dict"], reference["state_dict"])]
    for ours, theirs in zip(checkpoint["optimizer_states"], reference["optimizer_states"]):
        pairs += [(ours["state"][i], theirs["state"][i]) for i in theirs["state"]]
    largest = 0.0
    for ours, theirs in pairs:
        assert ours.keys() == theirs.keys()
        for key, expected in theirs.items():
            if isinstance(expected, torch.Tensor):
                largest = max(largest, (ours[key] - expected).abs().max().item())
    return largest


def test_preempted_and_timed_out_jobs_are_requeued_and_end_like_an_uninterrupted_run(
    slurm_cluster, tmp_path, launched
):
    straight = storygen_train(
        launched,
        slurm_cluster,
        tmp_path / "straight",
        *RESUMABLE_RUN,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    sweep_dir = tmp_path / "sweep"
    sweep = storygen_train(
        launched,
        slurm_cluster,
        tmp_path / "slurm",
        "-m",
        *ON_SLURM,
        *RESUMABLE_RUN,
        f"+callbacks.pace._target_={__name__}.PaceFirstAttempt",
        "+callbacks.pace.seconds=1.0",
        "task_name=preempted,timed_out",
        f"hydra.sweep.dir={sweep_dir}",
    )
    preempted, timed_out = sweep_dir / "0", sweep_dir / "1"
    cwd = tmp_path / "slurm"
    wait_until(
        lambda: steps_logged(preempted) >= 2 and steps_logged(timed_out) >= 2,
        "both jobs to train",
        sweep,
        cwd,
    )
    # Preemption: SLURM sends SIGTERM to the job's processes.
    slurm_cluster.run("scancel", "--signal=TERM", array_task(sweep_dir, 0))
    # Time limit: cut the job's limit to 90 s from now; SLURM sends submitit's signal
    # (USR2, signal_delay_s=120 before the limit) at its next check, then SIGTERM at the limit.
    job = array_task(sweep_dir, 1)
    elapsed = seconds(slurm_cluster.run("squeue", "--noheader", "--format=%M", "--jobs", job))
    limit = elapsed + 90
    slurm_cluster.run(
        "scontrol", "update", f"JobId={job}", f"TimeLimit=0:{limit // 60}:{limit % 60}"
    )

    def requeued() -> bool:
        return "Restarts=1" in slurm_cluster.run("scontrol", "show", "job", job)

    wait_until(requeued, "the timed-out job to be requeued", sweep, cwd)
    slurm_cluster.run("scontrol", "update", f"JobId={job}", "TimeLimit=10")
    wait_ok(sweep, cwd)
    wait_ok(straight, tmp_path / "straight")

    reference = final_checkpoint(tmp_path / "run")
    for run_dir, usr2 in ((preempted, False), (timed_out, True)):
        log = job_log(sweep_dir, int(run_dir.name))
        assert ("SIGUSR2 from SLURM: stopping at the next step boundary" in log) == usr2
        assert re.search(r"Requeued job \d+_\d", log), log[-3000:]  # by submitit
        stopped = re.search(r"Stopped by a signal at step (\d+)", log)
        assert stopped and 0 < int(stopped.group(1)) < 60, log[-3000:]  # mid-epoch
        assert "SLURM requeued this job (restart 1): resuming from last.ckpt" in log
        assert "Restored all states from the checkpoint" in log
        assert run_json(run_dir)["status"] == "completed"
        final = final_checkpoint(run_dir)
        assert final["global_step"] == reference["global_step"] == 60
        assert largest_difference(final, reference) <= 1e-6, run_dir


def test_ddp_ranks_start_from_slurm_and_train_each_story_once(slurm_cluster, tmp_path, launched):
    single = storygen_train(
        launched,
        slurm_cluster,
        tmp_path / "single",
        *SMALL_RUN,
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    sweep_dir = tmp_path / "sweep"
    ddp = storygen_train(
        launched,
        slurm_cluster,
        tmp_path / "ddp",
        "-m",
        *ON_SLURM,
        "hydra.launcher.tasks_per_node=2",
        *SMALL_RUN,
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"hydra.sweep.dir={sweep_dir}",
    )
    wait_ok(ddp, tmp_path / "ddp")
    wait_ok(single, tmp_path / "single")
    record = run_json(sweep_dir / "0")
    assert record["status"] == "completed", record
    # counted over both ranks: each story trained once, none twice
    assert record["train_tokens"] == run_json(tmp_path / "run")["train_tokens"]
    ranks = [job_log(sweep_dir, 0, task) for task in (0, 1)]
    for rank, log in enumerate(ranks):
        assert f"Initializing distributed: GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in log
    assert "SLURM auto-requeueing enabled" in ranks[0]  # Lightning found SLURM's environment
