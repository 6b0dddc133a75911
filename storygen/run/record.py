"""`run.json`: what a training run was and how it ended, written whether it completed or not.

`storygen.compare` builds sweep reports from it, with the CSV metrics and the generations.
It is written atomically, so a crash never leaves half a file. torch and Lightning are imported
where they are used: compare reads these names without them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from storygen.errors import find_user_error

RECORD_FILE = "run.json"
# the stories of a run's last validation and test (`val.jsonl`, `test.jsonl`), under its dir
GENERATIONS_DIR = "generations"


class RunPruned(Exception):  # noqa: N818 (not an error: a sweep's pruner stopped the run)
    """A search's pruner stopped this run early; recorded as `pruned`, not as failed."""


@dataclass
class RunRecord:
    task_name: str
    overrides: list[str]
    optimized_metric: str
    status: str = "running"
    """running | completed | interrupted (SIGTERM/Ctrl-C, resumable) | pruned | failed"""
    error: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    test_ckpt: str | None = None
    """best | last: the model tested and exported (conf/train.yaml); None without a fit"""
    objective: float | None = None
    """what a sweeper gets: optimized_metric of the tested model (storygen.run.tested)"""
    plan: dict[str, int | None] = field(default_factory=dict)
    """the fit's size as planned before it started (storygen.run.plan.TrainingPlan)"""
    parameters: dict[str, int] = field(default_factory=dict)
    wall_time_s: float = 0.0
    train_tokens: int = 0
    """story (non-pad) tokens trained on"""
    tokens_per_s: float = 0.0
    """train_tokens over the whole fit, validation included"""
    peak_memory_bytes: int = 0
    peak_memory_kind: str = "max_rss"
    """cuda_max_allocated on a GPU, else the process's peak resident memory"""
    _started: float = field(default_factory=time.perf_counter, repr=False)
    _fit_seconds: float = field(default=0.0, repr=False)
    _kept_previous: bool = field(default=False, repr=False)

    def fit_took(self, seconds: float) -> None:
        self._fit_seconds = seconds

    def fail(self, exc: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exc, RunPruned):
            self.status, self.error = "pruned", str(exc)
            return
        if isinstance(exc, SIGTERMException):
            self.status = "interrupted"
            self.error = "stopped by a signal; last.ckpt is saved, resume with ckpt_path=last"
            return
        self.status = "failed"
        user_error = find_user_error(exc)
        message = str(user_error) if user_error else f"{type(exc).__name__}: {exc}"
        self.error = message.splitlines()[0] if message else type(exc).__name__

    def finish(self) -> None:
        import torch

        if self.status == "running":
            self.status = "completed"
        self.wall_time_s = time.perf_counter() - self._started
        if self._fit_seconds > 0:
            self.tokens_per_s = self.train_tokens / self._fit_seconds
        # a CPU run on a CUDA host may initialize CUDA (pinned memory, RNG state) and use none
        on_gpu = torch.cuda.is_available() and torch.cuda.is_initialized()
        if on_gpu and torch.cuda.max_memory_allocated() > 0:
            self.peak_memory_bytes = int(torch.cuda.max_memory_allocated())
            self.peak_memory_kind = "cuda_max_allocated"
        else:
            self.peak_memory_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def as_dict(self) -> dict:
        return {
            key: value for key, value in dataclasses.asdict(self).items() if not key.startswith("_")
        }

    def write(self, output_dir: str | Path) -> Path:
        """Write run.json; an earlier attempt's record in the same dir (a resumed or retried
        run) is kept as run.1.json, run.2.json, ... rather than overwritten."""
        path = Path(output_dir) / RECORD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and not self._kept_previous:
            attempt = 1
            while path.with_name(f"run.{attempt}.json").exists():
                attempt += 1
            path.rename(path.with_name(f"run.{attempt}.json"))
        self._kept_previous = True
        staging = path.with_name(f".{RECORD_FILE}.{os.getpid()}.tmp")
        staging.write_text(json.dumps(self.as_dict(), indent=2, allow_nan=True) + "\n")
        staging.replace(path)
        return path
