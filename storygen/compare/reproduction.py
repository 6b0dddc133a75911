"""The published study's table with storygen's numbers beside it:
`python -m storygen.compare <sweep> --reproduction` writes `reproduction.md` and
`reproduction_lengths.png`.

A run takes the row of its model family (GPT-2, Mistral) and dataset (TinyStories,
WritingPrompts), read from its config, so any run of those can stand beside the published
study's, not only the runs of `experiment=reproduction`. Runs that differ only in `seed` are one
configuration, and its ROUGE is a mean with the 95% interval that every comparison report gives
(`storygen.compare.intervals`), set against the published point. The published figures and
where each setting comes from live in `published.yaml` (`storygen.compare.published`).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from storygen.compare.intervals import (  # noqa: E402
    Configuration,
    configuration_interval,
    configurations,
)
from storygen.compare.published import (  # noqa: E402
    Published,
    PublishedRow,
    config_value,
    load_published,
)
from storygen.compare.report import cell, number  # noqa: E402
from storygen.compare.sources import ComparedRun  # noqa: E402
from storygen.errors import StorygenError  # noqa: E402
from storygen.metrics.intervals import Interval  # noqa: E402
from storygen.metrics.lengths import length_distance, word_counts  # noqa: E402
from storygen.metrics.plots import draw_lengths  # noqa: E402
from storygen.metrics.rouge import HF, ROUGE_TYPES, STORYGEN, RougeConvention  # noqa: E402

FAMILIES = {"GPT2Config": "gpt2", "MistralConfig": "mistral"}
DATASETS = {"TinyStoriesCorpus": "tinystories", "WritingPromptsCorpus": "writingprompts"}
DATASET_NAMES = {"tinystories": "TinyStories", "writingprompts": "WritingPrompts"}
CONVENTIONS = {"hf": HF, "storygen": STORYGEN}

Matched = list[tuple[PublishedRow, list[ComparedRun]]]


# --- matching runs to rows ----------------------------------------------------------------


def row_key(run: ComparedRun) -> tuple[str, str] | None:
    """(family, dataset) of a run, from its backbone architecture and corpus classes."""
    names = [
        str(config_value(run, key)).rsplit(".", 1)[-1]
        for key in ("model.backbone.architecture._target_", "data.corpus._target_")
    ]
    family, dataset = FAMILIES.get(names[0]), DATASETS.get(names[1])
    return (family, dataset) if family and dataset else None


def match_runs(published: Published, runs: list[ComparedRun]) -> Matched:
    by_key: dict[tuple[str, str], list[ComparedRun]] = {}
    for run in runs:
        key = row_key(run)
        if key is not None:
            by_key.setdefault(key, []).append(run)
    return [(row, by_key.get((row.family, row.dataset), [])) for row in published.rows]


def row_label(row: PublishedRow) -> str:
    return f"{row.model} · {DATASET_NAMES[row.dataset]}"


def runs_label(runs: list[ComparedRun] | tuple[ComparedRun, ...]) -> str:
    """The runs by name, each with its seed: `0` (seed 3407), `1` (seed 3408)."""
    names = []
    for run in runs:
        seed = config_value(run, "seed")
        names.append(f"`{run.name}`" + (f" (seed {seed})" if isinstance(seed, int) else ""))
    return ", ".join(names) or "no run"


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]


# --- what the page compares ---------------------------------------------------------------


def published_side(point: float, interval: Interval) -> str:
    """Where the published point lies relative to storygen's interval."""
    if math.isnan(interval.low):
        return "no interval (fewer than two prompts)"
    if point > interval.high:
        return "published above storygen's interval"
    if point < interval.low:
        return "published below storygen's interval"
    return "published inside storygen's interval"


def published_against_runs(point: float, values: list[float]) -> str:
    """Where a published loss lies against storygen's runs: one number per run, no interval."""
    if not values:
        return "–"
    if point > max(values):
        return "published above every run" if len(values) > 1 else "published above"
    if point < min(values):
        return "published below every run" if len(values) > 1 else "published below"
    return "published between the runs" if len(values) > 1 else "published equal"


def train_loss_mean(run: ComparedRun) -> float | None:
    """Mean of the logged train/loss points: the published (Trainer's) end-of-training
    figure, as close as the logging interval allows."""
    points = run.curves.get("train/loss") or []
    return sum(value for _, value in points) / len(points) if points else None


def check_convention(run: ComparedRun, convention: RougeConvention) -> None:
    """A run's ROUGE stands in a convention's rows only if it was made under its settings."""
    settings = run.rouge.get(convention.name)
    if settings is not None and settings != convention.settings():
        raise StorygenError(
            f"run {run.name} logged ROUGE convention {convention.name!r} as {settings}, not "
            f"{convention.settings()}; its numbers cannot stand in that column."
        )


def interval_over(config: Configuration, prompts: int) -> str:
    seeds = len(config.runs)
    if seeds == 1:
        return f"{prompts:,} prompts (one seed: prompts only)"
    return f"{seeds} seeds x {prompts:,} prompts"


# --- sections -----------------------------------------------------------------------------


def settings_section(published: Published, matched: Matched) -> list[str]:
    """Each setting per row, the value its runs used and its source; rows with the same value
    and source share a line."""
    rows: list[list[str]] = []
    for entry in published.settings:
        merged: list[list[str]] = []
        for row, mine in matched:
            values = list(dict.fromkeys(entry.value(run) for run in mine)) or ["no run"]
            line = [entry.setting, row_label(row), "; ".join(values), entry.source(row)]
            if merged and merged[-1][2:] == line[2:]:
                merged[-1][1] += ", " + line[1]
            else:
                merged.append(line)
        rows += merged
    return [
        "## Settings and their sources",
        "",
        "Each setting's value as the runs' own configs hold it, and where it comes from: the "
        "published study (its figure quoted) or storygen's choice (with the reason). The "
        "published study does not state " + "; ".join(published.does_not_state) + ".",
        "",
        *table(["setting", "published row", "value used", "source"], rows),
    ]


def parameters_section(matched: Matched) -> list[str]:
    rows: list[list[str]] = []
    for row, mine in matched:
        rows.append([row_label(row), "published", row.trainable_params, row.total_params])
        for run in mine:
            exact = run.trainable_params == row.number("trainable_params")
            trainable = "–" if run.trainable_params is None else f"{run.trainable_params:,}"
            total = "–" if run.total_params is None else f"{run.total_params:,}"
            rows.append(["", f"storygen `{run.name}`", trainable + " (=)" * exact, total])
    return [
        "## Parameters",
        "",
        *table(["published row", "source", "trainable params", "all params"], rows),
        "",
        "`(=)`: trainable parameters equal the published count exactly. storygen counts 4-bit "
        "weights packed, as the published study does (`python -m storygen.inspect`).",
    ]


def losses_section(published: Published, matched: Matched) -> list[str]:
    losses = {
        "train loss": ("train_loss", "train_loss_at", train_loss_mean),
        "val loss": ("val_loss", "val_loss_at", lambda run: run.metrics.get("val/loss")),
    }
    rows: list[list[str]] = []
    for row, mine in matched:
        for name, (figure, at, measure) in losses.items():
            point = row.number(figure)
            values = [v for v in map(measure, mine) if v is not None and not math.isnan(v)]
            quoted = f"{getattr(row, figure)} ({getattr(row, at)})" if point is not None else "–"
            said = published_against_runs(point, values) if point is not None else "not stated"
            each = ", ".join(number(v, 4) for v in values) or "–"
            rows.append([row_label(row), name, quoted, runs_label(mine), each, said])
    return [
        "## Losses",
        "",
        *table(
            ["published row", "loss", "published", "runs", "storygen, each run", "verdict"], rows
        ),
        "",
        f"The published train loss is its {published.train_loss_kind}; storygen's is the mean "
        "of the run's logged train/loss points; its val loss is the final val/loss. A loss is "
        "one number per run, so it has no interval here: the verdict says only where the "
        "published figure lies against the runs' own values.",
    ]


def published_rouge(row: PublishedRow, kind: str, compared: bool) -> tuple[str, float | None]:
    """The published cell of a ROUGE line and the point to compare with (None: none, as the
    row states no ROUGE or the line is in another convention than the published study's)."""
    if row.rouge is None:
        return "not stated", None
    return (row.rouge[kind], row.number(kind)) if compared else ("–", None)


def rouge_rows(
    row: PublishedRow, mine: list[ComparedRun], compared: RougeConvention
) -> list[list[str]]:
    """One line per configuration (or run without per-story scores), convention and ROUGE
    type: the published figure, storygen's mean and interval, and the verdict."""
    conventions = [compared] + ([STORYGEN] if compared is not STORYGEN else [])
    for run in mine:
        for convention in conventions:
            check_convention(run, convention)
    grouped = configurations(mine)
    scored = {run.name for config in grouped for run in config.runs}
    unscored = [run for run in mine if run.name not in scored]  # kept no per-story scores
    rows: list[list[str]] = []
    for convention, kind in ((c, k) for c in conventions for k in ROUGE_TYPES):
        published, point = published_rouge(row, kind, convention is compared)
        key = convention.key(kind)
        for config in grouped:
            interval, prompts = configuration_interval(config, key)
            if not prompts:  # its runs did not log this convention
                cells = ["–", "–", "–"]
            else:
                said = "–" if row.rouge is None else "not compared (another convention)"
                said = published_side(point, interval) if point is not None else said
                cells = [str(interval), interval_over(config, prompts), said]
            rows.append([runs_label(config.runs), convention.name, kind, published, *cells])
        for run in unscored:
            value = number(run.story_metric(key), 4)
            cells = [value, "no per-story scores: no interval", "–"]
            rows.append([runs_label([run]), convention.name, kind, published, *cells])
    return [[row_label(row), *line] for line in rows]


def rouge_section(published: Published, matched: Matched) -> list[str]:
    compared = CONVENTIONS[published.rouge_convention]
    rows = [line for row, mine in matched for line in rouge_rows(row, mine, compared)]
    headers = [
        "published row", "runs", "convention", "ROUGE", "published",
        "storygen mean [95% interval]", "interval over", "verdict",
    ]  # fmt: skip
    return [
        "## ROUGE (F-measure, mean over the scored stories)",
        "",
        *(table(headers, rows) if rows else ["No run of a published row."]),
        "",
        "storygen's figure is the mean over the scored test stories with its 95% bootstrap "
        "interval, computed as every comparison report computes it (`storygen.compare`'s "
        "interval section): over seeds and prompts where runs differ only in `seed`, over "
        "prompts only for one seed. The verdict says where the published point lies: inside, "
        "above or below storygen's interval. Only the published study's convention "
        f"(`{compared.name}`: use_stemmer={compared.use_stemmer}, rougeLsum split at "
        f"{compared.lsum_split}) is compared with its figures; storygen's (use_stemmer=True, "
        "rougeLsum over Punkt sentences) is shown beside it. A run that did not log a "
        "convention shows `–` there (train with `rouge=with_hf`, or rescore with "
        "`storygen.evaluate rouge=with_hf`).",
    ]


def lengths_of(run: ComparedRun) -> dict[str, float]:
    generated, references = word_counts(list(run.generations)), word_counts(list(run.references))
    return length_distance(generated, references) | {
        "gen_mean": sum(generated) / len(generated),
        "ref_mean": sum(references) / len(references),
    }


def lengths_section(matched: Matched, lengths_png: str | None) -> list[str]:
    rows = []
    for row, mine in matched:
        for run in (r for r in mine if r.generations):
            stats = lengths_of(run)
            rows.append(
                [row_label(row), f"`{run.name}`", str(len(run.generations)),
                 number(stats["gen_mean"], 1), number(stats["ref_mean"], 1),
                 number(stats["wasserstein"], 1), number(stats["ks"], 3)]
            )  # fmt: skip
    lines = ["## Story lengths (words): generated vs reference", ""]
    if not rows:
        return lines + ["No run wrote generated stories."]
    headers = ["published row", "run", "stories", "generated mean", "reference mean", "W1", "KS"]
    lines += table(headers, rows) + [
        "",
        "W1: earth mover's distance between the two length distributions, in words; KS: the "
        "two-sample Kolmogorov-Smirnov statistic. The published study shows histograms only.",
    ]
    return lines + (
        ["", f"![Story lengths per model and dataset]({lengths_png})"] if lengths_png else []
    )


def reproduction_markdown(
    published: Published, runs: list[ComparedRun], lengths_png: str | None
) -> str:
    matched = match_runs(published, runs)
    lines = [
        "# The published study, reproduced",
        "",
        f"Published numbers: {published.source.strip()} Each published row is followed by "
        "storygen's runs of the same model family and dataset (from their configs). Story "
        "metrics come from the test split where the run was tested.",
    ]
    unmatched = [run.name for run in runs if row_key(run) is None]
    if unmatched:
        lines.append("Runs of no published row (not shown): " + ", ".join(unmatched) + ".")
    for section in (
        settings_section(published, matched),
        parameters_section(matched),
        losses_section(published, matched),
        rouge_section(published, matched),
        lengths_section(matched, lengths_png),
    ):
        lines += [""] + section
    return "\n".join(lines) + "\n"


def plot_reproduction_lengths(published: Published, runs: list[ComparedRun], path: Path) -> bool:
    """One histogram panel per (row, run) with stories, titled with the row and the W1."""
    panels = [
        (row, run) for row, mine in match_runs(published, runs) for run in mine if run.generations
    ]
    path.unlink(missing_ok=True)
    if not panels:
        return False
    columns = min(3, len(panels))
    grid_rows = math.ceil(len(panels) / columns)
    figure, grid = plt.subplots(
        grid_rows, columns, figsize=(4.8 * columns, 3.6 * grid_rows), squeeze=False
    )
    for ax, (row, run) in zip(grid.flat, panels):
        draw_lengths(ax, list(run.generations), list(run.references))
        w1 = lengths_of(run)["wasserstein"]
        ax.set_title(f"{row_label(row)}\n{run.name}: W1 {w1:.1f} words", fontsize="medium")
    for ax in grid.flat[len(panels) :]:
        ax.set_visible(False)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return True


def write_reproduction_report(runs: list[ComparedRun], out: Path) -> Path:
    published = load_published()
    out.mkdir(parents=True, exist_ok=True)
    lengths_png = (
        "reproduction_lengths.png"
        if plot_reproduction_lengths(published, runs, out / "reproduction_lengths.png")
        else None
    )
    path = out / "reproduction.md"
    path.write_text(reproduction_markdown(published, runs, lengths_png))
    return path
