"""The published table with storygen's numbers beside the published ones, row by row:
`python -m storygen.compare <sweep> --reproduction` writes `reproduction.md` and
`reproduction_lengths.png`.

A run takes the row of its model family (GPT-2, Mistral) and dataset (TinyStories,
WritingPrompts), read from its config, so any run of those can stand beside the study's, not
only the runs of `experiment=reproduction`. The published numbers live in `published.yaml`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from storygen.compare.sources import ComparedRun  # noqa: E402
from storygen.errors import StorygenError  # noqa: E402
from storygen.metrics.lengths import length_distance, word_counts  # noqa: E402
from storygen.metrics.plots import draw_lengths  # noqa: E402
from storygen.metrics.rouge import HF, ROUGE_TYPES, STORYGEN, RougeConvention  # noqa: E402

PUBLISHED_FILE = Path(__file__).with_name("published.yaml")
FAMILIES = {"GPT2Config": "gpt2", "MistralConfig": "mistral"}
DATASETS = {"TinyStoriesCorpus": "tinystories", "WritingPromptsCorpus": "writingprompts"}
DATASET_NAMES = {"tinystories": "TinyStories", "writingprompts": "WritingPrompts"}


@dataclass(frozen=True)
class PublishedRow:
    run: str
    model: str
    family: str
    dataset: str
    method: str
    trainable_params: int
    total_params: int
    train_loss: float | None
    val_loss: float | None
    rouge: dict[str, float] | None


@dataclass(frozen=True)
class Published:
    source: str
    rouge_convention: str
    train_loss_kind: str
    rows: tuple[PublishedRow, ...]


def load_published(path: Path = PUBLISHED_FILE) -> Published:
    data = OmegaConf.to_container(OmegaConf.load(path))
    return Published(
        source=data["source"],
        rouge_convention=data["rouge_convention"],
        train_loss_kind=data["train_loss_kind"],
        rows=tuple(PublishedRow(**row) for row in data["runs"]),
    )


def setting(run: ComparedRun, key: str) -> Any:
    """A value of the run's config, None where it is missing or does not resolve offline."""
    if run.config is None:
        return None
    return OmegaConf.select(run.config, key, default=None, throw_on_resolution_failure=False)


def row_key(run: ComparedRun) -> tuple[str, str] | None:
    """(family, dataset) of a run, from its backbone architecture and corpus classes."""
    architecture = str(setting(run, "model.backbone.architecture._target_") or "")
    corpus = str(setting(run, "data.corpus._target_") or "")
    family = FAMILIES.get(architecture.rsplit(".", 1)[-1])
    dataset = DATASETS.get(corpus.rsplit(".", 1)[-1])
    return (family, dataset) if family and dataset else None


def match_runs(
    published: Published, runs: list[ComparedRun]
) -> list[tuple[PublishedRow, list[ComparedRun]]]:
    by_key: dict[tuple[str, str], list[ComparedRun]] = {}
    for run in runs:
        key = row_key(run)
        if key is not None:
            by_key.setdefault(key, []).append(run)
    return [(row, by_key.get((row.family, row.dataset), [])) for row in published.rows]


# --- cells --------------------------------------------------------------------------------


def num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def train_loss_mean(run: ComparedRun) -> float | None:
    """Mean of the logged train/loss points: the study's (Trainer's) end-of-training figure,
    as close as the logging interval allows."""
    points = run.curves.get("train/loss") or []
    return sum(value for _, value in points) / len(points) if points else None


def rouge_of(run: ComparedRun, convention: RougeConvention) -> dict[str, float | None]:
    """ROUGE of the run's story split under one convention, never another's in its place."""
    settings = run.rouge.get(convention.name)
    if settings is not None and settings != convention.settings():
        raise StorygenError(
            f"run {run.name} logged ROUGE convention {convention.name!r} as {settings}, not "
            f"{convention.settings()}; its numbers cannot stand in that column."
        )
    return {key: run.story_metric(convention.key(key)) for key in ROUGE_TYPES}


def lengths_of(run: ComparedRun) -> dict[str, float]:
    distance = length_distance(
        word_counts(list(run.generations)), word_counts(list(run.references))
    )
    return distance | {
        "generated": len(run.generations),
        "gen_mean": _mean(word_counts(list(run.generations))),
        "ref_mean": _mean(word_counts(list(run.references))),
    }


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else math.nan


def run_settings(run: ComparedRun) -> str:
    epochs = setting(run, "trainer.max_epochs")
    batch = setting(run, "data.batch_size")
    accumulation = setting(run, "trainer.accumulate_grad_batches")
    samples = setting(run, "data.max_train_samples")
    model = setting(run, "model.backbone.name_or_path") or "random init"
    parts = [f"{model}", f"{epochs} ep", f"batch {batch} x {accumulation}"]
    parts.append(f"{samples:,} train stories" if isinstance(samples, int) else "all train stories")
    return ", ".join(parts)


# --- report -------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]


def run_label(run: ComparedRun, shared: set[str]) -> str:
    """The run's name and the overrides that set it apart (`reproduction_run=...` in the
    reproduction sweep)."""
    own = [o for o in run.overrides if o not in shared]
    return f"`{run.name}`" + (" " + " ".join(f"`{o}`" for o in own) if own else "")


def row_label(row: PublishedRow) -> str:
    return f"{row.model} · {DATASET_NAMES[row.dataset]}"


def reproduction_markdown(
    published: Published, runs: list[ComparedRun], lengths_png: str | None
) -> str:
    matched = match_runs(published, runs)
    shared = set.intersection(*(set(run.overrides) for run in runs)) if runs else set()
    study_convention = {"hf": HF, "storygen": STORYGEN}[published.rouge_convention]
    lines = [
        "# The study, reproduced",
        "",
        f"Published numbers: {published.source.strip()}",
        "Each study row is followed by storygen's runs of the same model family and dataset "
        "(from their configs). ROUGE: the study's convention "
        f"(`{study_convention.name}`: use_stemmer={study_convention.use_stemmer}, rougeLsum "
        f"split at {study_convention.lsum_split}) and storygen's (use_stemmer=True, rougeLsum "
        "over Punkt sentences) in separate columns; a run that did not log a convention shows "
        "`–` there (train with `rouge=with_hf`, or rescore with `storygen.evaluate "
        "rouge=with_hf`). Story metrics come from the test split where the run was tested.",
    ]
    unmatched = [run.name for run in runs if row_key(run) is None]
    if unmatched:
        lines.append("Runs of no study row (not shown): " + ", ".join(unmatched) + ".")

    lines += ["", "## Parameters and loss", ""]
    rows: list[list[str]] = []
    for row, mine in matched:
        rows.append(
            [row_label(row), "published", row.method, count(row.trainable_params),
             count(row.total_params), "–", num(row.train_loss), num(row.val_loss)]
        )  # fmt: skip
        for run in mine:
            exact = run.trainable_params == row.trainable_params
            rows.append(
                [
                    "", "storygen " + run_label(run, shared), run_settings(run),
                    count(run.trainable_params) + (" (=)" if exact else ""),
                    count(run.total_params), num(run.metrics.get("train/loss")),
                    num(train_loss_mean(run)), num(run.metrics.get("val/loss")),
                ]
            )  # fmt: skip
        if not mine:
            rows.append(["", "storygen", "no run", "–", "–", "–", "–", "–"])
    lines += table(
        [
            "row", "source", "method / settings", "trainable params", "all params",
            "train loss (last)", "train loss (mean)", "val loss",
        ],
        rows,
    )  # fmt: skip
    lines.append("")
    lines.append(
        f"The study's train loss is its {published.train_loss_kind}; storygen's is given as the "
        "last logged value and as the mean of the logged values. `(=)`: trainable parameters "
        "equal the study's exactly. storygen's total counts 4-bit weights packed, as the study "
        "does (see `python -m storygen.inspect`); its run.json records trainable and total."
    )

    lines += ["", "## ROUGE (F-measure, mean over the scored stories)", ""]
    headers = ["row", "source", "convention"] + [key for key in ROUGE_TYPES]
    rows = []
    for row, mine in matched:
        published_rouge = row.rouge or {}
        rows.append(
            [row_label(row), "published", study_convention.name]
            + [num(published_rouge.get(key)) for key in ROUGE_TYPES]
        )
        for run in mine:
            for convention in (study_convention, STORYGEN):
                if convention is STORYGEN and study_convention is STORYGEN:
                    continue
                scores = rouge_of(run, convention)
                rows.append(
                    ["", "storygen " + run_label(run, shared), convention.name]
                    + [num(scores[key]) for key in ROUGE_TYPES]
                )
    lines += table(headers, rows)

    lines += ["", "## Story lengths (words): generated vs reference", ""]
    rows = []
    for row, mine in matched:
        for run in (r for r in mine if r.generations):
            stats = lengths_of(run)
            rows.append(
                [
                    row_label(row), run_label(run, shared), str(int(stats["generated"])),
                    num(stats["gen_mean"], 1), num(stats["ref_mean"], 1),
                    num(stats["wasserstein"], 1), num(stats["ks"], 3),
                ]
            )  # fmt: skip
    if rows:
        lines += table(
            ["row", "run", "stories", "generated mean", "reference mean", "W1", "KS"], rows
        )
        lines.append("")
        lines.append(
            "W1: earth mover's distance between the two length distributions, in words; KS: "
            "the two-sample Kolmogorov-Smirnov statistic. The study published histograms only."
        )
    else:
        lines.append("No run wrote generated stories.")
    if lengths_png:
        lines += ["", f"![Story lengths per model and dataset]({lengths_png})"]
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
