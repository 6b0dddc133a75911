"""The comparison report: a sorted table, loss curves, ROUGE bars and story lengths."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402

from storygen.compare.conventions import check_one_convention_per_column  # noqa: E402
from storygen.compare.intervals import intervals_section  # noqa: E402
from storygen.compare.sources import LOSS_CURVES, ComparedRun  # noqa: E402
from storygen.compare.stories import stories_section  # noqa: E402
from storygen.compare.study import StudyRef, study_section  # noqa: E402
from storygen.metrics.directions import direction  # noqa: E402
from storygen.metrics.plots import draw_lengths  # noqa: E402
from storygen.metrics.rouge import ROUGE_TYPES  # noqa: E402
from storygen.run.errors import StorygenError  # noqa: E402

# --- ordering and table -------------------------------------------------------------------


def default_mode(metric: str) -> str:
    return direction(metric) or "min"


def monitored_metric(records: list[ComparedRun]) -> str:
    """The runs' `optimized_metric` (the most common one, should they disagree)."""
    named = Counter(r.optimized_metric for r in records if r.optimized_metric)
    return named.most_common(1)[0][0] if named else "val/loss"


def sort_runs(records: Iterable[ComparedRun], metric: str, mode: str) -> list[ComparedRun]:
    """Best first by `metric`; runs without it after those with it; pruned runs (stopped
    early, so their metric is not final) after those, failed runs last."""

    def key(record: ComparedRun) -> tuple[bool, bool, bool, float]:
        value = record.metrics.get(metric)
        missing = value is None or math.isnan(value)
        return (
            record.status == "failed",
            record.status == "pruned",
            missing,
            0.0 if missing else (value if mode == "min" else -value),
        )

    return sorted(records, key=key)


def number(value: float | None, digits: int = 4) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def memory(record: ComparedRun) -> str:
    if record.peak_memory_bytes is None:
        return "–"
    kind = {"cuda_max_allocated": " (GPU)", "max_rss": " (RSS)"}.get(record.peak_memory_kind, "")
    return f"{record.peak_memory_bytes / 2**30:.2f} GiB{kind}"


def status(record: ComparedRun) -> str:
    if record.status == "failed":
        return f"**failed**: {record.error or 'no error recorded'}"
    if record.status == "pruned":
        return f"pruned: {record.error}" if record.error else "pruned"
    return record.status


def parameters(record: ComparedRun) -> str:
    return "–" if record.trainable_params is None else f"{record.trainable_params:,}"


def wall_time(record: ComparedRun) -> str:
    return "–" if record.wall_time_s is None else f"{record.wall_time_s / 60:.1f} min"


Column = tuple[str, Callable[[ComparedRun], str]]


def story_column(header: str, name: str, digits: int = 4) -> Column:
    return header, lambda r: number(r.story_metric(name), digits)


COLUMNS: list[tuple[str, Callable[[ComparedRun], str]]] = [
    ("status", status),
    ("trainable params", parameters),
    ("train/loss", lambda r: number(r.metrics.get("train/loss"))),
    ("val/loss", lambda r: number(r.metrics.get("val/loss"))),
    ("stories", lambda r: r.story_split or "–"),
    story_column("ROUGE-1", "rouge1"),
    story_column("ROUGE-2", "rouge2"),
    story_column("ROUGE-L", "rougeL"),
    story_column("ROUGE-Lsum", "rougeLsum"),
    story_column("len mean", "len_mean", 1),
    story_column("len median", "len_median", 1),
    story_column("len W1 to ref", "len_wasserstein", 1),
    story_column("distinct-1", "distinct1"),
    story_column("distinct-2", "distinct2"),
    story_column("repetition-3", "repetition3"),
    ("wall time", wall_time),
    ("tokens/s", lambda r: number(r.tokens_per_s, 0)),
    ("peak memory", memory),
]


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(runs: list[ComparedRun], shared: set[str]) -> list[str]:
    """One row per run; the overrides column shows only what differs between the runs."""
    headers = ["run", "overrides"] + [header for header, _ in COLUMNS]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for run in runs:
        own = " ".join(f"`{o}`" for o in run.overrides if o not in shared) or "–"
        cells = [run.name, own] + [value(run) for _, value in COLUMNS]
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return lines


# --- figures ------------------------------------------------------------------------------


def save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_loss_curves(runs: list[ComparedRun], path: Path) -> Path | None:
    if not any(run.curves.get(key) for run in runs for key in LOSS_CURVES):
        return None
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key in zip(axes, LOSS_CURVES):
        for run in (r for r in runs if r.curves.get(key)):
            steps, values = zip(*run.curves[key])
            style = "--" if run.status == "failed" else "-"
            ax.plot(steps, values, style, marker="o" if key == "val/loss" else None, label=run.name)
        ax.set(title=key, xlabel="step", ylabel="loss")
        if ax.lines:
            ax.legend(fontsize="small")
    return save(figure, path)


def plot_rouge(runs: list[ComparedRun], path: Path) -> Path | None:
    scored = [run for run in runs if run.story_metric("rouge1") is not None]
    if not scored:
        return None
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(scored) + 2), 4.5))
    positions, width = np.arange(len(scored)), 0.8 / len(ROUGE_TYPES)
    for offset, key in enumerate(ROUGE_TYPES):
        values = [run.story_metric(key) or 0.0 for run in scored]
        axes.bar(positions + (offset - 1.5) * width, values, width, label=key)
    axes.set_xticks(positions, [run.name for run in scored], rotation=30, ha="right")
    axes.set(ylabel="F1", title="ROUGE of generated stories against references")
    axes.legend(fontsize="small")
    return save(figure, path)


def plot_length_grid(runs: list[ComparedRun], path: Path) -> Path | None:
    with_stories = [run for run in runs if run.generations]
    if not with_stories:
        return None
    columns = min(3, len(with_stories))
    rows = math.ceil(len(with_stories) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.4 * rows), squeeze=False)
    for ax, run in zip(grid.flat, with_stories):
        draw_lengths(ax, list(run.generations), list(run.references))
        ax.set_title(run.name, fontsize="medium")
    for ax in grid.flat[len(with_stories) :]:
        ax.set_visible(False)
    return save(figure, path)


# --- report -------------------------------------------------------------------------------


FIGURES = {
    "Loss curves": ("loss_curves.png", plot_loss_curves),
    "ROUGE": ("rouge.png", plot_rouge),
    "Story lengths (generated vs reference, words)": ("lengths.png", plot_length_grid),
}


def write_figures(runs: list[ComparedRun], out: Path) -> dict[str, str | None]:
    """Each figure's file name by title, None where no run logged what it shows."""
    written: dict[str, str | None] = {}
    for title, (filename, plot) in FIGURES.items():
        (out / filename).unlink(missing_ok=True)  # a stale figure from an earlier report
        written[title] = filename if plot(runs, out / filename) else None
    return written


def render_markdown(
    runs: list[ComparedRun],
    source: str,
    metric: str,
    mode: str,
    figures: dict[str, str | None],
    extra: list[str] = (),
    baseline: str | None = None,
) -> str:
    counts = Counter(run.status for run in runs)
    shared = set.intersection(*(set(run.overrides) for run in runs))
    lines = [
        "# Run comparison",
        "",
        f"{source}: {len(runs)} runs ("
        + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
        + ").",
        f"Sorted by `{metric}` ({mode}); pruned, then failed runs last. Story metrics come "
        "from the test split where the run was tested, else from its last validation; ROUGE "
        "is storygen's convention (`rouge1`...: stemmed, rougeLsum over sentences).",
    ]
    if shared:
        lines.append("Overrides shared by all runs: " + " ".join(f"`{o}`" for o in sorted(shared)))
    lines += [""] + markdown_table(runs, shared)
    lines += intervals_section(runs, shared, baseline)
    for title, filename in figures.items():
        lines += ["", f"## {title}", ""]
        lines.append(f"![{title}]({filename})" if filename else "No run logged this.")
    lines += stories_section(runs, shared) + list(extra)
    return "\n".join(lines) + "\n"


def render_html(markdown: str) -> str:

    # stories are model output: shown as text, never as HTML
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    style = (
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
        "vertical-align:top}img{max-width:100%}"
    )
    return f"<!doctype html>\n<meta charset='utf-8'><style>{style}</style>\n{body}"


def write_report(
    records: list[ComparedRun],
    source: str,
    out: Path,
    metric: str | None,
    mode: str | None,
    html: bool,
    study: StudyRef | None = None,
    baseline: str | None = None,
) -> list[Path]:
    """Write report.md (and report.html) with its PNGs into `out`; returns the report files."""
    if metric is not None and not any(metric in r.metrics for r in records):
        logged = sorted({name for r in records for name in r.metrics})
        raise StorygenError(
            f"--metric {metric}: no run logged it; logged metrics: {', '.join(logged)}."
        )
    check_one_convention_per_column(records)
    metric = metric or monitored_metric(records)
    mode = mode or default_mode(metric)
    out.mkdir(parents=True, exist_ok=True)
    runs = sort_runs(records, metric, mode)
    extra = study_section(study, out) if study else []
    markdown = render_markdown(
        runs, source, metric, mode, write_figures(runs, out), extra, baseline
    )
    written = [out / "report.md"]
    written[0].write_text(markdown)
    if html:
        written.append(out / "report.html")
        written[1].write_text(render_html(markdown))
    return written
