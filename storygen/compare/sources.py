"""The runs to compare, read from their directories or from W&B into one record type."""

from __future__ import annotations

import csv
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from storygen.compare.conventions import conventions_of
from storygen.errors import StorygenError
from storygen.metrics.directions import SUMMARIZED_STAGES, direction
from storygen.run.record import GENERATIONS_DIR, RECORD_FILE

LOSS_CURVES = ("train/loss", "val/loss")
METRIC_PREFIXES = ("train/", "val/", "test/")
# W&B run states (wandb.apis.public.Run.state) as run.json statuses; the rest are "incomplete".
WANDB_STATUS = {
    "finished": "completed",
    "failed": "failed",
    "crashed": "failed",
    "killed": "failed",
    "preempted": "failed",
}
GROUP_HELP = (
    "the group is <task>-<date>-<time> for a sweep (its dir multirun/<date>/<time>), "
    "<task>-<study_name> for an Optuna search, the task_name for a single run "
    "(e.g. --group train-2026-11-28-12-00-00)"
)
RUN_DIR_HELP = "a run dir (outputs/<task>/<date>/<time>/) or a sweep dir (multirun/<date>/<time>/)"


@dataclass(frozen=True)
class ComparedRun:
    """What the report shows of one run, read from its directory or from W&B alike."""

    name: str
    status: str
    """completed, pruned (by a search's pruner), failed or incomplete (killed before it could
    write run.json)."""
    error: str | None = None
    overrides: tuple[str, ...] = ()
    optimized_metric: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    """Final value of each logged metric: `val/loss`, `test/rouge1`, ..."""
    best: dict[str, float] = field(default_factory=dict)
    """Best value over the run of each val/test metric that has a better side (the lowest
    `val/loss`, the highest `val/rouge1`), as W&B's summary holds it."""
    curves: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    """(step, value) points of `train/loss` and `val/loss`."""
    trainable_params: int | None = None
    total_params: int | None = None
    wall_time_s: float | None = None
    tokens_per_s: float | None = None
    peak_memory_bytes: int | None = None
    peak_memory_kind: str | None = None
    generations: tuple[str, ...] = ()
    references: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    story_scores: tuple[dict[str, float], ...] = ()
    """Each story's own scores (`rouge1`, `len_mean`, ...), aligned with `prompts`."""
    rouge: dict[str, dict[str, object]] = field(default_factory=dict)
    """The ROUGE conventions its ROUGE keys were made under: name -> settings."""
    config: Any = None
    """The run's composed config (a DictConfig; from W&B, resolved already)."""

    @property
    def story_split(self) -> str | None:
        """Story metrics come from the test split when the run was tested, else the last val."""
        return next((s for s in ("test", "val") if f"{s}/rouge1" in self.metrics), None)

    def story_metric(self, name: str) -> float | None:
        return self.metrics.get(f"{self.story_split}/{name}")


# --- local run directories ------------------------------------------------------------


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra").is_dir()


def find_run_dirs(path: Path) -> list[Path]:
    """The run itself, or the numbered job dirs of a sweep, in job order."""
    if not path.is_dir():
        raise StorygenError(f"{path} does not exist or is not a directory; pass {RUN_DIR_HELP}.")
    if is_run_dir(path):
        return [path]
    jobs = [child for child in path.iterdir() if is_run_dir(child)]
    if not jobs:
        raise StorygenError(
            f"{path} holds no runs (no .hydra/ in it or its subdirs); pass {RUN_DIR_HELP}."
        )
    return sorted(jobs, key=lambda job: (not job.name.isdigit(), job.name.zfill(12)))


def read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StorygenError(f"{path} is not valid JSON ({exc}); fix or delete it.") from exc


def read_metrics_csv(run_dir: Path) -> list[dict[str, str]]:
    """Rows of every CSVLogger file under the run, oldest file first (a resumed run adds one)."""
    rows: list[dict[str, str]] = []
    for path in sorted(run_dir.glob("**/metrics.csv"), key=lambda p: p.stat().st_mtime):
        with path.open(newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def last_logged_values(rows: list[dict[str, str]]) -> dict[str, float]:
    """Each column's last non-empty value: the CSVLogger fills only the columns logged per row."""
    values: dict[str, float] = {}
    for row in rows:
        values |= {key: float(v) for key, v in row.items() if v and key.startswith(METRIC_PREFIXES)}
    return values


def best_logged_values(rows: list[dict[str, str]]) -> dict[str, float]:
    """The best of each val/test column with a better side, as W&B's summary keeps it."""
    columns: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            if value and key.startswith(SUMMARIZED_STAGES) and direction(key):
                columns.setdefault(key, []).append(float(value))
    return {
        key: (min if direction(key) == "min" else max)(values) for key, values in columns.items()
    }


def curve_from_rows(rows: list[dict[str, str]], key: str) -> list[tuple[int, float]]:
    return [(int(float(row["step"])), float(row[key])) for row in rows if row.get(key)]


Stories = tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...], tuple[dict[str, float], ...]]
"""Generated stories, their references, their prompts and each story's own scores (empty
where the run's files predate them), in the same order."""


def stories_of(rows: list[dict[str, Any]]) -> Stories:
    return (
        tuple(r["generation"] for r in rows),
        tuple(r["reference"] for r in rows),
        tuple(r.get("prompt", "") for r in rows),
        tuple(r.get("scores") or story_score_columns(r) for r in rows),
    )


def story_score_columns(row: dict[str, Any]) -> dict[str, float]:
    """A W&B generations table keeps each story's scores as columns `scores/<name>`."""
    return {key.split("/", 1)[1]: value for key, value in row.items() if key.startswith("scores/")}


def read_stories(run_dir: Path) -> Stories:
    """The stories of the test split, else of the last validation."""
    for split in ("test", "val"):
        path = run_dir / GENERATIONS_DIR / f"{split}.jsonl"
        if path.is_file():
            lines = path.read_text().splitlines()
            return stories_of([json.loads(line) for line in lines if line.strip()])
    return (), (), (), ()


def read_run_dir(run_dir: Path, name: str) -> ComparedRun:
    """A run from its files; without run.json (killed hard) it is incomplete, metrics from CSV."""
    summary = read_json(run_dir / RECORD_FILE)
    hydra_dir = run_dir / ".hydra"
    config = (
        OmegaConf.load(hydra_dir / "config.yaml") if (hydra_dir / "config.yaml").is_file() else {}
    )
    overrides = summary.get("overrides")
    if overrides is None and (hydra_dir / "overrides.yaml").is_file():
        overrides = list(OmegaConf.load(hydra_dir / "overrides.yaml"))
    rows = read_metrics_csv(run_dir)
    generations, references, prompts, story_scores = read_stories(run_dir)
    return ComparedRun(
        name=name,
        status=summary.get("status", "incomplete"),
        error=summary.get("error"),
        overrides=tuple(overrides or ()),
        optimized_metric=summary.get("optimized_metric", config.get("optimized_metric")),
        metrics=last_logged_values(rows) | (summary.get("metrics") or {}),
        best=best_logged_values(rows),
        curves={key: curve_from_rows(rows, key) for key in LOSS_CURVES},
        trainable_params=(summary.get("parameters") or {}).get("trainable"),
        total_params=(summary.get("parameters") or {}).get("total"),
        wall_time_s=summary.get("wall_time_s"),
        tokens_per_s=summary.get("tokens_per_s"),
        peak_memory_bytes=summary.get("peak_memory_bytes"),
        peak_memory_kind=summary.get("peak_memory_kind"),
        generations=generations,
        references=references,
        prompts=prompts,
        story_scores=story_scores,
        rouge=conventions_of(config),
        config=config or None,
    )


def read_local_runs(dirs: list[Path]) -> list[ComparedRun]:
    """Every run under the given dirs: named by job number, prefixed by their dir when several."""
    names: dict[Path, str] = {}
    for given in (d.resolve() for d in dirs):
        for run in find_run_dirs(given):
            prefix = [given.name] if len(dirs) > 1 else []
            names.setdefault(run, "/".join(prefix + ([] if run == given else [run.name])))
    return [read_run_dir(run, name or run.name) for run, name in names.items()]


# --- W&B ----------------------------------------------------------------------------------


def wandb_curve(run: Any, key: str) -> list[tuple[int, float]]:
    """(step, value) points of one metric; Lightning logs its step as `trainer/global_step`."""
    rows = run.scan_history(keys=["trainer/global_step", key])
    return [(int(row["trainer/global_step"]), float(row[key])) for row in rows]


def wandb_stories(run: Any, download_dir: Path) -> Stories:
    """Stories from the `test/generations` (else `val/generations`) table the callback logs."""
    for split in ("test", "val"):
        table_file = run.summary.get(f"{split}/generations")
        if table_file and table_file.get("path"):
            with run.file(table_file["path"]).download(root=str(download_dir), replace=True) as f:
                table = json.load(f)
            return stories_of([dict(zip(table["columns"], row)) for row in table["data"]])
    return (), (), (), ()


def summary_metrics(summary: Any) -> tuple[dict[str, float], dict[str, float]]:
    """The last and the best value of each metric in a W&B summary: a metric defined with a
    summary (storygen's val/test metrics) is a dict `{min|max, last}`, others a number."""
    last: dict[str, float] = {}
    best: dict[str, float] = {}
    # wandb's HTTPSummary has keys() and get() but no __iter__
    for key in [k for k in summary.keys() if k.startswith(METRIC_PREFIXES)]:  # noqa: SIM118
        value = summary.get(key)
        if hasattr(value, "get") and value.get("_type") is None:  # not a table or histogram
            for mode in ("min", "max"):
                if is_number(value.get(mode)):
                    best[key] = float(value.get(mode))
            value = value.get("last")
        if is_number(value):
            last[key] = float(value)
    return last, best


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def record_from_wandb(run: Any, download_dir: Path) -> ComparedRun:
    """A W&B run as a ComparedRun, so W&B and local runs share the report code.

    Tested against a stand-in with the attributes of `wandb.apis.public.Run` read here
    (name, state, config, summary, scan_history, file) filled from a real offline run's file
    (its summary's {min|max, last} dicts as W&B stores them), never against the live service.
    run.json's fields (status, error, overrides, parameters, wall_time_s, tokens_per_s,
    peak_memory_*) are read from the run summary under the same names when train put them
    there; otherwise W&B's state and `_runtime` stand in.
    """
    summary = run.summary
    # train puts run.json's status in the summary: a pruned run finishes as W&B "finished"
    status = summary.get("status") or WANDB_STATUS.get(run.state, "incomplete")
    metrics, best = summary_metrics(summary)
    parameters = summary.get("parameters") or {}
    generations, references, prompts, story_scores = wandb_stories(run, download_dir)
    return ComparedRun(
        name=run.name,
        status=status,
        error=summary.get("error") or (f"W&B state: {run.state}" if status == "failed" else None),
        overrides=tuple(summary.get("overrides") or ()),
        optimized_metric=run.config.get("optimized_metric"),
        metrics=metrics,
        best=best,
        curves={key: wandb_curve(run, key) for key in LOSS_CURVES},
        trainable_params=parameters.get("trainable"),
        total_params=parameters.get("total"),
        wall_time_s=summary.get("wall_time_s", summary.get("_runtime")),
        tokens_per_s=summary.get("tokens_per_s"),
        peak_memory_bytes=summary.get("peak_memory_bytes"),
        peak_memory_kind=summary.get("peak_memory_kind"),
        generations=generations,
        references=references,
        prompts=prompts,
        story_scores=story_scores,
        rouge=conventions_of(run.config),
        config=OmegaConf.create(dict(run.config)),
    )


def read_wandb_runs(project: str, group: str) -> list[ComparedRun]:
    import wandb

    try:
        runs = list(wandb.Api().runs(project, filters={"group": group}))
    except (wandb.errors.Error, ValueError) as exc:
        raise StorygenError(
            f"could not read W&B project {project!r} ({exc}); pass --wandb ENTITY/PROJECT and set "
            "WANDB_API_KEY (shell or .env)."
        ) from exc
    if not runs:
        raise StorygenError(
            f"W&B project {project!r} has no runs in group {group!r}; {GROUP_HELP}."
        )
    with tempfile.TemporaryDirectory() as download_dir:
        return [record_from_wandb(run, Path(download_dir)) for run in runs]
