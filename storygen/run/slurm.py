"""Preempted and timed-out SLURM jobs come back and resume exactly, with nothing passed by hand.

A job launched by Hydra's submitit launcher (`hydra/launcher=slurm`) is stopped by SLURM in
two ways: SIGTERM (preemption, `scancel --signal=TERM`, `scontrol requeue`) and submitit's
signal (USR2, sent `signal_delay_s` before the time limit). Both stop training at the next
optimizer-step boundary, where `last.ckpt` is saved (callbacks.resilience). Then submitit's
own handler requeues the job (counting time-outs against `max_num_timeout`), unless SLURM
is already ending or requeuing it. The requeued job runs the same sweep job in the same run
dir, sees `SLURM_RESTART_COUNT`, and resumes from that `last.ckpt`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class JobRequeued(SystemExit):
    """The job stopped for SLURM and comes back later: it reports no result now, so the
    sweep waits for the requeued run instead of taking this one's."""


def restart_count() -> int:
    """How many times SLURM has requeued this job (0 outside SLURM)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0)


def resume_path(ckpt_path: str | None) -> str | None:
    """The checkpoint to start from: the one asked for, else `last` in a requeued SLURM job
    (its run dir is the one the stopped job wrote; no last.ckpt there starts from scratch)."""
    if ckpt_path is None and restart_count() > 0:
        log.info("SLURM requeued this job (restart %d): resuming from last.ckpt", restart_count())
        return "last"
    return ckpt_path


def submitit_signal() -> signal.Signals | None:
    """submitit's preemption/time-out signal in a submitit SLURM job, else None."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or "SLURM_JOB_ID" not in os.environ:
        return None
    from submitit import JobEnvironment

    return JobEnvironment._usr_sig()


def job_state() -> str:
    """This job's state in SLURM's eyes (RUNNING, or COMPLETING when SLURM ends it)."""
    from submitit import JobEnvironment

    job_id = JobEnvironment().job_id  # `<array>_<task>` in an array: its own line only
    result = subprocess.run(
        ["squeue", "--noheader", "--format=%T", "--jobs", job_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.stdout.strip() or "UNKNOWN"


def stop_at_step_boundary(signum: int, frame: object) -> None:
    log.warning("%s from SLURM: stopping at the next step boundary", signal.Signals(signum).name)
    signal.raise_signal(signal.SIGTERM)  # Lightning stops there; last.ckpt is saved


@contextmanager
def requeue_when_stopped() -> Iterator[None]:
    """In a submitit SLURM job: submitit's signal stops training at a step boundary (it would
    exit mid-step), and a job stopped by a signal is handed to submitit to requeue."""
    sig = submitit_signal()
    if sig is None:
        yield
        return
    submitit_handler = signal.getsignal(sig)
    signal.signal(sig, stop_at_step_boundary)
    try:
        yield
    except SIGTERMException as exc:
        signal.signal(sig, submitit_handler)
        state = job_state()
        if state == "RUNNING" and callable(submitit_handler):
            try:  # saves the job for resubmission, `scontrol requeue`, then exits
                submitit_handler(sig, None)
            except SystemExit:
                pass
            except subprocess.CalledProcessError as error:
                # the requeue ends the job's processes at once, `scontrol` among them
                if error.returncode != -signal.SIGTERM:
                    raise
        else:
            log.warning("SLURM is ending this job (%s); it requeues it if it was preempted", state)
        raise JobRequeued(exc.code) from exc
    finally:
        signal.signal(sig, submitit_handler)
