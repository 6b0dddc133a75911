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
from storygen.errors import StorygenError  # noqa: E402
from storygen.metrics.directions import direction  # noqa: E402
from storygen.metrics.intervals import mean_interval  # noqa: E402
from storygen.metrics.plots import draw_lengths  # noqa: E402
from storygen.metrics.rouge import ROUGE_TYPES  # noqa: E402

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


TEXT_COLUMNS = {"run", "overrides", "status", "stories"}


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(runs: list[ComparedRun], shared: set[str]) -> list[str]:
    """One row per run; the overrides column shows only what differs between the runs."""
    headers = ["run", "overrides"] + [header for header, _ in COLUMNS]
    # numbers right-aligned (markdown's `---:`; HTML gets text-align:right)
    align = [":---" if header in TEXT_COLUMNS else "---:" for header in headers]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    for run in runs:
        own = " ".join(f"`{o}`" for o in run.overrides if o not in shared) or "–"
        cells = [run.name, own] + [value(run) for _, value in COLUMNS]
        lines.append("| " + " | ".join(cell(c) for c in cells) + " |")
    return lines


# --- figures ------------------------------------------------------------------------------


def run_labels(runs: list[ComparedRun]) -> dict[str, str]:
    """Each run named by what sets it apart, as every figure shows it: its overrides that not
    every run shares, each key cut to its last part where that stays unambiguous
    (`model.optimizer.lr=0.003` -> `lr=0.003`); its name where nothing differs."""
    shared = set.intersection(*(set(run.overrides) for run in runs)) if runs else set()
    own = {run.name: [o for o in run.overrides if o not in shared] for run in runs}
    keys = {o.partition("=")[0] for overrides in own.values() for o in overrides}
    short = {key: key.rsplit(".", 1)[-1] for key in keys}
    repeated = {name for name, n in Counter(short.values()).items() if n > 1}

    def shorten(override: str) -> str:
        key, _, value = override.partition("=")
        return f"{key if short[key] in repeated else short[key]}={value}"

    labels = {name: ", ".join(map(shorten, overrides)) or name for name, overrides in own.items()}
    seen = Counter(labels.values())
    return {
        name: label if seen[label] == 1 or label == name else f"{label} ({name})"
        for name, label in labels.items()
    }


def save(figure: plt.Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_loss_curves(runs: list[ComparedRun], path: Path) -> Path | None:
    if not any(run.curves.get(key) for run in runs for key in LOSS_CURVES):
        return None
    labels = run_labels(runs)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key in zip(axes, LOSS_CURVES):
        for run in (r for r in runs if r.curves.get(key)):
            steps, values = zip(*run.curves[key])
            style = "--" if run.status == "failed" else "-"
            marker = "o" if key == "val/loss" else None
            ax.plot(steps, values, style, marker=marker, label=labels[run.name])
        ax.set(title=key, xlabel="step", ylabel="loss")
        if ax.lines:
            ax.legend(fontsize="small")
    return save(figure, path)


def plot_rouge(runs: list[ComparedRun], path: Path) -> Path | None:
    scored = [run for run in runs if run.story_metric("rouge1") is not None]
    if not scored:
        return None
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(scored) + 2), 4.5))
    labels = run_labels(runs)
    positions, width = np.arange(len(scored)), 0.8 / len(ROUGE_TYPES)
    for offset, key in enumerate(ROUGE_TYPES):
        values = [run.story_metric(key) or 0.0 for run in scored]
        place = positions + (offset - 1.5) * width
        axes.bar(place, values, width, label=key, yerr=error_bars(scored, key), capsize=2)
    axes.set_xticks(positions, [labels[run.name] for run in scored], rotation=30, ha="right")
    axes.set(ylabel="F1", title="ROUGE of generated stories (bars: 95% interval over prompts)")
    axes.legend(fontsize="small")
    return save(figure, path)


def error_bars(runs: list[ComparedRun], key: str) -> np.ndarray:
    """Distances from each run's mean down and up to its 95% interval over prompts (0 where it
    kept no per-story scores), as matplotlib's `yerr` takes them."""
    bars = np.zeros((2, len(runs)))
    for column, run in enumerate(runs):
        scores = [story[key] for story in run.story_scores if key in story]
        if len(scores) == len(run.story_scores) and len(scores) > 1:
            interval = mean_interval(scores)
            bars[:, column] = (interval.mean - interval.low, interval.high - interval.mean)
    return bars


def plot_length_grid(runs: list[ComparedRun], path: Path) -> Path | None:
    with_stories = [run for run in runs if run.generations]
    if not with_stories:
        return None
    columns = min(3, len(with_stories))
    rows = math.ceil(len(with_stories) / columns)
    figure, grid = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.4 * rows), squeeze=False)
    labels = run_labels(runs)
    for ax, run in zip(grid.flat, with_stories):
        draw_lengths(ax, list(run.generations), list(run.references))
        ax.set_title(labels[run.name], fontsize="medium")
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
        # the runs as the figure labels them, also for a reader without the image
        alt = f"{title}; runs: " + "; ".join(run_labels(runs).values())
        lines.append(f"![{cell(alt)}]({filename})" if filename else "No run logged this.")
    lines += stories_section(runs, shared) + list(extra)
    return "\n".join(lines) + "\n"


STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;
  max-width:1280px;margin:2rem auto;padding:0 1.25rem}
h1,h2,h3{line-height:1.25;margin:1.6em 0 .6em}
h2{border-bottom:1px solid #d0d7de;padding-bottom:.3em}
code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f4f6;padding:.1em .3em;
  border-radius:4px}
.scroll{overflow-x:auto;max-width:100%;border:1px solid #d0d7de;border-radius:6px;margin:1em 0}
table{border-collapse:separate;border-spacing:0;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #eaeef2;vertical-align:top;text-align:left}
th{background:#f6f8fa;font-weight:600;white-space:nowrap}
td[style*="right"],th[style*="right"]{font-variant-numeric:tabular-nums;white-space:nowrap}
th:first-child,td:first-child{position:sticky;left:0;z-index:1;background:#fff;
  border-right:1px solid #d0d7de}
th:first-child{background:#f6f8fa}
img{max-width:100%;height:auto;display:block;margin:.5em 0}
blockquote{margin:0;padding:0 1em;color:#59636e;border-left:.25em solid #d0d7de}
"""


def render_html(markdown: str) -> str:

    # stories are model output: shown as text, never as HTML
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    # each table in a box that scrolls sideways, so the wide run table never widens the page
    body = body.replace("<table>", '<div class="scroll"><table>')
    body = body.replace("</table>", "</table></div>")
    return (
        "<!doctype html>\n<meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>Run comparison</title>\n<style>{STYLE}</style>\n{body}"
    )


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
