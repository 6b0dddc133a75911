"""storygen.compare on hand-written run dirs in the format train leaves behind.

Each fixture run has what a Hydra job dir holds (`.hydra/config.yaml`, `.hydra/overrides.yaml`),
the CSVLogger's sparse `csv/metrics.csv`, `run.json` and `generations/{test,val}.jsonl`.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
from omegaconf import OmegaConf

from storygen.compare import default_mode, read_local_runs, record_from_wandb, sort_runs
from storygen.compare.__main__ import main
from storygen.metrics.intervals import mean_interval
from storygen.metrics.story import per_story_scores, score_stories
from tests.wandb_records import wandb_config, wandb_history, wandb_summary

REFERENCES = [
    "Once upon a time a little fox found a red ball in the garden and wanted to keep it forever.",
    "Tom had a big dog named Max. Every morning they ran to the park and played with a stick.",
    "The sun was hot, so Lily took her bucket to the sea and built a tall castle on the beach.",
    "A tiny bird could not fly yet. Her mother sang to her every day until one morning she flew.",
]
STORY_METRICS = sorted(score_stories(REFERENCES, REFERENCES, [True] * 4))
ENDED = [True, False, True, True]


@dataclass(frozen=True)
class FixtureRun:
    job: int
    lr: str
    val_losses: list[float]
    story_fraction: float
    """How much of each reference the "generated" story repeats: more words, higher ROUGE-1."""
    error: str | None = None
    seed: int | None = None
    """Set: the run's overrides hold `seed=<seed>`."""


# Sorted by val/loss: 1, 0, 3, then 2, which failed although its last val/loss is lowest.
# Sorted by ROUGE-1 (max): 0, 3, 1, then 2.
RUNS = [
    FixtureRun(0, "0.001", [3.2, 2.6], story_fraction=0.9),
    FixtureRun(1, "0.003", [3.0, 2.2], story_fraction=0.4),
    FixtureRun(2, "0.01", [2.0], story_fraction=0.3, error="OutOfMemoryError: CUDA out of memory"),
    FixtureRun(3, "0.0003", [3.4, 2.9], story_fraction=0.7),
]


def generations(fraction: float) -> list[str]:
    return [" ".join(r.split()[: int(len(r.split()) * fraction)]) for r in REFERENCES]


def metrics_rows(run: FixtureRun, scores: dict[str, float]) -> list[dict[str, Any]]:
    """What the CSVLogger writes: a row per logging call, only its own columns filled."""
    rows: list[dict[str, Any]] = []
    for epoch, val_loss in enumerate(run.val_losses):
        for step in (epoch * 10 + 4, epoch * 10 + 9):
            rows.append({"step": step, "lr-AdamW": run.lr})
            rows.append({"epoch": epoch, "step": step, "train/loss": val_loss + 0.3 - step / 100})
        val = {f"val/{name}": value for name, value in scores.items()}
        rows.append({"epoch": epoch, "step": epoch * 10 + 9, "val/loss": val_loss, **val})
    if run.error is None:
        test = {f"test/{name}": value for name, value in scores.items()}
        rows.append({"epoch": len(run.val_losses), "step": 20, "test/loss": 9.9, **test})
    return rows


def write_run(run_dir: Path, run: FixtureRun) -> None:
    overrides = ["experiment=quickstart", f"model.optimizer.lr={run.lr}", "logger=csv"]
    overrides += [] if run.seed is None else [f"seed={run.seed}"]
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (run_dir / ".hydra" / "config.yaml").write_text(
        "task_name: quickstart\ntags:\n- dev\nseed: 3407\noptimized_metric: val/loss\n"
        f"model:\n  optimizer:\n    lr: {run.lr}\n"
        "paths:\n  output_dir: ${hydra:runtime.output_dir}\n"
    )
    stories = generations(run.story_fraction)
    scores = score_stories(stories, REFERENCES, ENDED)
    rows = metrics_rows(run, scores)
    columns = ["epoch", "lr-AdamW", "step", "train/loss", "val/loss", "test/loss"]
    columns += [f"{stage}/{name}" for stage in ("val", "test") for name in STORY_METRICS]
    (run_dir / "csv").mkdir()
    with (run_dir / "csv" / "metrics.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted(columns), restval="")
        writer.writeheader()
        writer.writerows(rows)

    (run_dir / "generations").mkdir()
    split = "val" if run.error else "test"
    with (run_dir / "generations" / f"{split}.jsonl").open("w") as handle:
        story_scores = per_story_scores(stories, REFERENCES, ENDED)
        for reference, story, ended, own in zip(REFERENCES, stories, ENDED, story_scores):
            line = {"prompt": reference.split(".")[0], "reference": reference}
            line |= {"generation": story, "new_tokens": 30, "ended_with_eos": ended}
            handle.write(json.dumps(line | {"scores": own}) + "\n")

    stage = "val" if run.error else "test"
    last_train_loss = [row["train/loss"] for row in rows if "train/loss" in row][-1]
    final = {"val/loss": run.val_losses[-1], "train/loss": last_train_loss}
    final |= {f"{stage}/{name}": value for name, value in scores.items()}
    summary = {
        "status": "failed" if run.error else "completed",
        "error": run.error,
        "task_name": "quickstart",
        "overrides": overrides,
        "optimized_metric": "val/loss",
        "metrics": final,
        "parameters": {"trainable": 1_234_567, "total": 1_234_567},
        "wall_time_s": 90.0 + run.job,
        "train_tokens": 100_000,
        "tokens_per_s": 1111.1,
        "peak_memory_bytes": 3 * 2**30,
        "peak_memory_kind": "max_rss",
    }
    (run_dir / "run.json").write_text(json.dumps(summary))


def write_sweep(sweep: Path, runs: list[FixtureRun] = RUNS) -> Path:
    sweep.mkdir(parents=True)
    (sweep / "multirun.yaml").write_text("hydra:\n  mode: MULTIRUN\n")
    for run in runs:
        write_run(sweep / str(run.job), run)
    return sweep


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    return write_sweep(tmp_path / "multirun" / "2026-01-02" / "10-00-00-000000")


@pytest.fixture(scope="module")
def compared_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sweep compared once with the defaults and --html, read by several tests."""
    sweep = write_sweep(tmp_path_factory.mktemp("multirun") / "10-00-00-000000")
    main([str(sweep), "--html"])
    return sweep


def table(report: Path) -> list[dict[str, str]]:
    """The report's (first) markdown table, of the runs, as one dict per row."""
    text = report.read_text()
    start = text.index("\n|") + 1
    lines = text[start : text.index("\n\n", start)].splitlines()
    header, *rows = ([cell.strip() for cell in line.strip("|").split(" | ")] for line in lines)
    return [dict(zip(header, row)) for row in rows[1:]]


def files_outside(root: Path, skip: str) -> dict[Path, tuple[int, int]]:
    return {
        path: (path.stat().st_mtime_ns, path.stat().st_size)
        for path in root.rglob("*")
        if path.is_file() and skip not in path.parts
    }


def test_table_sorted_by_optimized_metric_with_failed_run_last(compared_sweep: Path) -> None:
    report = compared_sweep / "compare" / "report.md"
    rows = table(report)

    assert [row["run"] for row in rows] == ["1", "0", "3", "2"]
    assert [row["val/loss"] for row in rows] == ["2.2000", "2.6000", "2.9000", "2.0000"]
    assert [row["status"] for row in rows[:3]] == ["completed"] * 3
    assert rows[3]["status"] == "**failed**: OutOfMemoryError: CUDA out of memory"
    assert rows[0]["overrides"] == "`model.optimizer.lr=0.003`"
    assert rows[0]["trainable params"] == "1,234,567"
    assert rows[0]["wall time"] == "1.5 min"
    assert rows[0]["peak memory"] == "3.00 GiB (RSS)"
    assert [row["stories"] for row in rows] == ["test", "test", "test", "val"]
    expected = score_stories(generations(0.4), REFERENCES, [True, False, True, True])
    assert rows[0]["ROUGE-1"] == f"{expected['rouge1']:.4f}"
    assert rows[0]["len W1 to ref"] == f"{expected['len_wasserstein']:.1f}"
    assert rows[0]["distinct-2"] == f"{expected['distinct2']:.4f}"
    text = report.read_text()
    assert "Sorted by `val/loss` (min)" in text
    assert "Overrides shared by all runs: `experiment=quickstart` `logger=csv`" in text


def test_figures_are_real_images_embedded_in_the_report(compared_sweep: Path) -> None:
    out = compared_sweep / "compare"
    report = (out / "report.md").read_text()
    for name in ("loss_curves.png", "rouge.png", "lengths.png"):
        assert f"]({name})" in report
        assert (out / name).stat().st_size > 10_000
        image = plt.imread(out / name)
        assert image.ndim == 3 and image.shape[1] >= 600
        assert image[..., :3].std() > 0.05, f"{name} is blank"
    # four runs with stories: small multiples in 2 rows of 3 panels of 450x340 px
    assert plt.imread(out / "lengths.png").shape[:2] == (680, 1350)
    html = (out / "report.html").read_text()
    assert "<table>" in html and '<img src="loss_curves.png"' in html


@pytest.mark.parametrize(
    ("metric", "mode", "order"),
    [
        ("val/loss", None, ["1", "0", "3", "2"]),
        ("val/loss", "max", ["3", "0", "1", "2"]),
        ("val/rouge1", None, ["0", "3", "1", "2"]),
        ("val/rouge1", "min", ["1", "3", "0", "2"]),
    ],
)
def test_sort_order_follows_metric_and_mode(
    compared_sweep: Path, metric: str, mode: str | None, order: list[str]
) -> None:
    runs = sort_runs(read_local_runs([compared_sweep]), metric, mode or default_mode(metric))

    assert [run.name for run in runs] == order


def test_rerun_with_another_metric_rewrites_only_the_compare_dir(sweep: Path) -> None:
    before = files_outside(sweep, skip="compare")
    main([str(sweep)])
    main([str(sweep), "--metric", "val/rouge1"])

    assert files_outside(sweep, skip="compare") == before
    written = {path.name for path in (sweep / "compare").iterdir()}
    assert written == {"report.md", "loss_curves.png", "rouge.png", "lengths.png"}
    assert [row["run"] for row in table(sweep / "compare" / "report.md")] == ["0", "3", "1", "2"]


def test_run_killed_before_run_json_is_incomplete_with_csv_metrics(sweep: Path) -> None:
    write_run(sweep / "4", FixtureRun(4, "0.03", [3.1, 2.4], story_fraction=0.5))
    (sweep / "4" / "run.json").unlink()

    runs = sort_runs(read_local_runs([sweep]), "val/loss", "min")

    killed = next(run for run in runs if run.name == "4")
    assert killed.status == "incomplete"
    assert killed.metrics["val/loss"] == 2.4
    assert killed.curves["val/loss"] == [(9, 3.1), (19, 2.4)]
    assert killed.optimized_metric == "val/loss"
    assert killed.overrides[1] == "model.optimizer.lr=0.03"
    assert killed.wall_time_s is None
    assert [run.name for run in runs] == ["1", "4", "0", "3", "2"]


def test_several_sweeps_need_out_and_name_runs_by_sweep(
    sweep: Path, tmp_path: Path, capsys
) -> None:
    other = write_sweep(tmp_path / "multirun" / "2026-01-02" / "11-00-00-000000", RUNS[:2])
    with pytest.raises(SystemExit) as exit_info:
        main([str(sweep), str(other)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: pass --out DIR")

    names = [run.name for run in read_local_runs([sweep, other])]
    assert names == [f"10-00-00-000000/{n}" for n in range(4)] + [
        f"11-00-00-000000/{n}" for n in range(2)
    ]


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda tmp: [str(tmp / "empty")], "holds no runs"),
        (
            lambda tmp: [str(tmp / "sweep"), "--out", str(tmp / "sweep" / "1" / "r")],
            "inside the run",
        ),
        (lambda tmp: [str(tmp / "sweep"), "--metric", "val/bleu"], "--metric val/bleu: no run"),
        (lambda tmp: ["--wandb", "me/storygen"], "needs --group G and --out DIR"),
        (lambda tmp: [str(tmp / "sweep"), "--baseline", "7"], "--baseline 7: no run"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path: Path, capsys, make_args, message: str) -> None:
    (tmp_path / "empty").mkdir()
    write_sweep(tmp_path / "sweep", RUNS[:2])
    with pytest.raises(SystemExit) as exit_info:
        main(make_args(tmp_path))

    assert exit_info.value.code == 2
    error = capsys.readouterr().err.splitlines()
    assert len(error) == 1 and error[0].startswith("error: ") and message in error[0]


def test_cli_missing_dir_exits_2_with_one_error_line(tmp_path: Path) -> None:
    missing = tmp_path / "multirun" / "nope"
    result = subprocess.run(
        [sys.executable, "-m", "storygen.compare", str(missing)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {missing} does not exist or is not a directory; pass a run dir "
        "(outputs/<task>/<date>/<time>/) or a sweep dir (multirun/<date>/<time>/)."
    ]


def section_tables(report: Path, title: str) -> list[list[dict[str, str]]]:
    """The markdown tables of one `## ` section of the report, each as one dict per row."""
    text = report.read_text()
    section = text[text.index(f"## {title}") :].split("\n## ")[0]
    tables, rows = [], []
    for line in [*section.splitlines(), ""]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
        elif rows:
            header, _, *body = rows
            tables.append([dict(zip(header, row)) for row in body])
            rows = []
    return tables


def test_intervals_over_prompts_and_against_the_best(compared_sweep: Path) -> None:
    means, against = section_tables(compared_sweep / "compare" / "report.md", "How sure")
    # one configuration per run (no seeds), best (lowest val/loss) first
    assert [row["runs"] for row in means] == ["1", "0", "3", "2"]
    for row, run in zip(means, [RUNS[1], RUNS[0], RUNS[3], RUNS[2]]):
        own = per_story_scores(generations(run.story_fraction), REFERENCES, ENDED)
        for key in ("rouge1", "rougeLsum", "len_mean", "repetition3", "eos_rate"):
            assert row[key] == str(mean_interval([story[key] for story in own])), key
        assert (row["seeds"], row["prompts"]) == ("1", "4")
    # run 0 repeats 90% of each reference, the best run (1) 40%: higher ROUGE on every
    # prompt, so better; longer stories, which have no better side: higher
    assert [row["rouge1"] for row in against][0] == "baseline"
    assert against[1]["rouge1"].startswith("better (+")
    assert against[1]["len_mean"].startswith("higher (+")
    # every run has the same EOS on every prompt
    assert {row["eos_rate"] for row in against[1:]} == {"not distinguishable (+0 [+0, +0])"}


def test_runs_differing_only_in_seed_are_one_configuration(tmp_path: Path) -> None:
    sweep = write_sweep(
        tmp_path / "sweep",
        [
            FixtureRun(0, "0.001", [3.0], story_fraction=0.5, seed=1),
            FixtureRun(1, "0.001", [3.1], story_fraction=0.6, seed=2),
            FixtureRun(2, "0.003", [3.2], story_fraction=0.5),
            FixtureRun(3, "0.0003", [3.3], story_fraction=0.5),
        ],
    )
    main([str(sweep), "--baseline", "2"])
    means, against = section_tables(sweep / "compare" / "report.md", "How sure")
    assert [(row["runs"], row["seeds"]) for row in means] == [("0, 1", "2"), ("2", "1"), ("3", "1")]
    seeds = [per_story_scores(generations(f), REFERENCES, ENDED) for f in (0.5, 0.6)]
    pooled = [[story["rouge1"] for story in seed] for seed in seeds]
    assert means[0]["rouge1"].startswith(f"{np.mean(pooled):.4g} [")
    assert means[0]["configuration"] == "`model.optimizer.lr=0.001`"
    # run 3 wrote the same stories as the baseline (run 2) with another learning rate: not
    # distinguishable in any metric
    assert [row["configuration"] for row in against] == [
        "`model.optimizer.lr=0.001`",
        "`model.optimizer.lr=0.003`",
        "`model.optimizer.lr=0.0003`",
    ]
    assert set(list(against[1].values())[1:]) == {"baseline"}
    assert set(list(against[2].values())[1:]) == {"not distinguishable (+0 [+0, +0])"}


# --- W&B ----------------------------------------------------------------------------------


@dataclass
class FakeWandbFile:
    content: str

    def download(self, root: str = ".", replace: bool = False, exist_ok: bool = False):
        return io.StringIO(self.content)


@dataclass
class FakeWandbRun:
    """The attributes of `wandb.apis.public.Run` that compare reads, with the same shapes."""

    name: str
    state: str
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    stored_files: dict[str, str] = field(default_factory=dict)

    def scan_history(self, keys: list[str] | None = None, page_size: int = 1000, **_: Any):
        """Like wandb: only the rows that hold every requested key."""
        return iter([row for row in self.history if all(key in row for key in keys or [])])

    def file(self, name: str) -> FakeWandbFile:
        return FakeWandbFile(self.stored_files[name])


def fake_wandb_run(name: str, state: str, val_loss: float) -> FakeWandbRun:
    table_path = "media/table/test/generations_20_0f3c.table.json"
    columns = ["step", "prompt", "reference", "generation", "new_tokens", "ended_with_eos"]
    data = [[20, "p", ref, " ".join(ref.split()[:8]), 12, True] for ref in REFERENCES]
    return FakeWandbRun(
        name=name,
        state=state,
        config={"task_name": "quickstart", "optimized_metric": "val/loss", "seed": 3407},
        summary={
            "val/loss": val_loss,
            "test/rouge1": 0.5,
            "test/len_mean": 8.0,
            "train/loss": val_loss + 0.2,
            "trainer/global_step": 20,
            "_runtime": 95.5,
            "test/generations": {"_type": "table-file", "path": table_path, "nrows": 4},
            "test/length_histogram": {"_type": "histogram", "bins": [0, 1], "values": [4]},
        },
        history=[
            {"_step": 0, "trainer/global_step": 4, "train/loss": val_loss + 1.0},
            {"_step": 1, "trainer/global_step": 9, "train/loss": val_loss + 0.5},
            {"_step": 2, "trainer/global_step": 9, "val/loss": val_loss, "epoch": 0},
        ],
        stored_files={table_path: json.dumps({"_type": "table", "columns": columns, "data": data})},
    )


def test_wandb_run_maps_to_the_same_record_as_a_run_dir(tmp_path: Path) -> None:
    record = record_from_wandb(fake_wandb_run("lr-3e-3", "finished", 2.2), tmp_path)

    assert (record.name, record.status, record.error) == ("lr-3e-3", "completed", None)
    assert record.optimized_metric == "val/loss"
    assert record.metrics == {
        "val/loss": 2.2,
        "test/rouge1": 0.5,
        "test/len_mean": 8.0,
        "train/loss": pytest.approx(2.4),
    }
    assert record.curves == {"train/loss": [(4, 3.2), (9, 2.7)], "val/loss": [(9, 2.2)]}
    assert record.wall_time_s == 95.5
    assert record.references == tuple(REFERENCES)
    assert record.generations[0] == "Once upon a time a little fox found"

    crashed = record_from_wandb(fake_wandb_run("lr-1e-2", "crashed", 2.0), tmp_path)
    assert (crashed.status, crashed.error) == ("failed", "W&B state: crashed")
    running = record_from_wandb(fake_wandb_run("lr-1e-4", "running", 2.0), tmp_path)
    assert running.status == "incomplete"


def test_wandb_flag_builds_the_report_from_the_group(tmp_path: Path, monkeypatch) -> None:
    import wandb

    calls = []

    class FakeApi:
        def runs(self, path: str, filters: dict[str, Any]) -> list[FakeWandbRun]:
            calls.append((path, filters))
            return [
                fake_wandb_run("lr-1e-2", "crashed", 2.0),
                fake_wandb_run("lr-1e-3", "finished", 2.6),
                fake_wandb_run("lr-3e-3", "finished", 2.2),
            ]

    monkeypatch.setattr(wandb, "Api", FakeApi)
    out = tmp_path / "report"
    main(["--wandb", "me/storygen", "--group", "quickstart", "--out", str(out)])

    assert calls == [("me/storygen", {"group": "quickstart"})]
    rows = table(out / "report.md")
    assert [row["run"] for row in rows] == ["lr-3e-3", "lr-1e-3", "lr-1e-2"]
    assert rows[2]["status"] == "**failed**: W&B state: crashed"
    assert (out / "lengths.png").stat().st_size > 10_000


def wandb_run_from_offline_files(run_dir: Path) -> FakeWandbRun:
    """The run as W&B's API would give it once synced: summary, history, config and files read
    from its offline run file and dir (the summary with its {min|max, last} dicts as they are)."""
    (run_file,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    files = run_file.parent / "files"
    return FakeWandbRun(
        name=run_dir.name,
        state="finished",
        config=wandb_config(run_file),
        summary=wandb_summary(run_file),
        history=wandb_history(run_file),
        stored_files={
            str(path.relative_to(files)): path.read_text()
            for path in files.glob("media/table/**/*.json")
        },
    )


def test_wandb_summary_dicts_give_the_same_record_as_the_run_dir(trained_run_copy) -> None:
    run_dir = trained_run_copy.output_dir
    # what Hydra writes into a run dir (the fixture trained in-process, without one)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(trained_run_copy.config, run_dir / ".hydra" / "config.yaml")
    local = read_local_runs([run_dir])[0]
    synced = record_from_wandb(wandb_run_from_offline_files(run_dir), run_dir)

    story_and_loss = {key for key in local.metrics if key.startswith(("val/", "test/"))}
    assert {"val/loss", "test/rouge1", "test/len_mean"} <= story_and_loss
    for key in story_and_loss | {"train/loss"}:
        assert synced.metrics[key] == pytest.approx(local.metrics[key], rel=1e-6), key
    assert synced.best.keys() == local.best.keys()
    assert {"val/loss", "val/rouge1", "test/rouge1", "test/distinct2"} <= synced.best.keys()
    for key, value in local.best.items():
        assert synced.best[key] == pytest.approx(value, rel=1e-6), key
    assert synced.curves == pytest.approx(local.curves)
    assert synced.generations == local.generations
    # each story's scores, from the W&B table's columns: the intervals need no run dir
    assert synced.story_scores == local.story_scores
    assert len(synced.story_scores) == 8 and "rouge1" in synced.story_scores[0]


def test_group_help_names_the_group_a_sweep_gets(tmp_path: Path, capsys) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import read_write

    from storygen.environment.wandb_run import run_group
    from tests.conftest import compose_config

    cfg = compose_config([], tmp_path)
    with read_write(cfg.hydra):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = "multirun/2026-11-28/12-00-00"
    HydraConfig().set_config(cfg)
    try:
        assert run_group(cfg.task_name) == "train-2026-11-28-12-00-00"
    finally:
        HydraConfig.instance().cfg = None  # no later test runs inside this sweep
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "<task>-<date>-<time> for a sweep (its dir multirun/<date>/<time>)" in help_text
    assert "--group train-2026-11-28-12-00-00" in help_text


def test_figures_name_runs_by_what_differs_with_intervals_on_rouge(
    tmp_path: Path, monkeypatch
) -> None:
    from storygen.compare import report

    drawn = {}
    save = report.save

    def keep(figure, path):  # what each figure shows, read before it is written and closed
        drawn[path.name] = figure.axes
        return save(figure, path)

    monkeypatch.setattr(report, "save", keep)
    main([str(write_sweep(tmp_path / "sweep")), "--out", str(tmp_path / "out")])

    labels = ["lr=0.003", "lr=0.001", "lr=0.0003", "lr=0.01"]  # best first, as the table
    for ax in drawn["loss_curves.png"]:
        shown = [text.get_text() for text in ax.get_legend().get_texts()]
        assert set(shown) <= set(labels) and shown, shown
    (rouge,) = drawn["rouge.png"]
    assert [tick.get_text() for tick in rouge.get_xticklabels()] == labels
    assert [ax.get_title() for ax in drawn["lengths.png"] if ax.get_visible()] == labels
    # ROUGE-1's error bars span each run's 95% interval over prompts
    bars = next(c for c in rouge.containers if c.get_label() == "rouge1")
    (segments,) = bars.errorbar.lines[2]
    spans = [tuple(segment[:, 1]) for segment in segments.get_segments()]
    for (low, high), run in zip(spans, [RUNS[1], RUNS[0], RUNS[3], RUNS[2]]):
        own = per_story_scores(generations(run.story_fraction), REFERENCES, ENDED)
        interval = mean_interval([story["rouge1"] for story in own])
        assert (low, high) == pytest.approx((interval.low, interval.high), abs=1e-6)
    report_md = (tmp_path / "out" / "report.md").read_text()
    assert "![ROUGE; runs: lr=0.003; lr=0.001; lr=0.0003; lr=0.01](rouge.png)" in report_md


def test_run_labels_stay_unambiguous() -> None:
    from storygen.compare.report import run_labels
    from storygen.compare.sources import ComparedRun

    def run(name: str, *overrides: str) -> ComparedRun:
        return ComparedRun(name=name, status="completed", overrides=("logger=csv", *overrides))

    runs = [
        run("0", "model.optimizer.lr=1e-3"),
        run("1", "model.optimizer.lr=3e-3", "seed=1"),
        run("2", "model.optimizer.lr=3e-3", "seed=1"),
        run("3", "data.lr=5"),
        run("4"),
    ]
    # two keys end in `lr`: both spelled out; identical runs told apart by their names; the
    # override every run shares (logger=csv) left out; a run with none of its own: its name
    assert run_labels(runs) == {
        "0": "model.optimizer.lr=1e-3",
        "1": "model.optimizer.lr=3e-3, seed=1 (1)",
        "2": "model.optimizer.lr=3e-3, seed=1 (2)",
        "3": "data.lr=5",
        "4": "4",
    }
    assert run_labels(runs[:3])["0"] == "lr=1e-3"
