"""How sure the report's story metrics are: the mean and 95% bootstrap interval of each, per
configuration (the runs that differ only in `seed`, pooled over seeds and prompts), and each
configuration against the baseline (the report's best, or `--baseline`) by a paired bootstrap
on the prompts they share, marked better / worse / not distinguishable.

Everything comes from the per-story scores that train and evaluate keep in the generations
JSONL, so no story is generated again."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from storygen.compare.sources import ComparedRun
from storygen.errors import StorygenError
from storygen.metrics.directions import direction
from storygen.metrics.intervals import (
    Interval,
    paired_difference,
    seeds_interval,
    verdict,
)
from storygen.metrics.rouge import ROUGE_TYPES
from storygen.metrics.story import PER_STORY

SEED_OVERRIDE = "seed="


@dataclass(frozen=True)
class Configuration:
    """Runs that differ only in their seed: one configuration, one row."""

    overrides: tuple[str, ...]
    runs: tuple[ComparedRun, ...]

    def label(self, shared: set[str]) -> str:
        own = [f"`{o}`" for o in self.overrides if o not in shared]
        return " ".join(own) or self.runs[0].name

    def prompt_scores(self, metric: str) -> dict[tuple[str, str], list[float]]:
        """(prompt, reference) -> the metric of each seed's story, for the prompts that every
        seed scored."""
        per_run = [
            {
                (prompt, reference): scores[metric]
                for prompt, reference, scores in zip(run.prompts, run.references, run.story_scores)
                if metric in scores
            }
            for run in self.runs
        ]
        shared = set.intersection(*(set(scores) for scores in per_run))
        ordered = [key for key in per_run[0] if key in shared]
        return {key: [scores[key] for scores in per_run] for key in ordered}


def configurations(runs: list[ComparedRun]) -> list[Configuration]:
    """The runs with per-story scores grouped by their overrides less `seed=`, in the order of
    their best run."""
    groups: dict[tuple[str, ...], list[ComparedRun]] = {}
    for run in runs:
        if run.story_scores and all(run.story_scores):
            key = tuple(o for o in run.overrides if not o.startswith(SEED_OVERRIDE))
            groups.setdefault(key, []).append(run)
    return [Configuration(key, tuple(group)) for key, group in groups.items()]


def story_metrics(configs: list[Configuration]) -> list[str]:
    """The per-story metrics every configuration has, ROUGE first."""
    common = set.intersection(
        *(set(scores) for c in configs for run in c.runs for scores in run.story_scores)
    )
    rouge = sorted(
        (m for m in common if m.endswith(ROUGE_TYPES)),
        key=lambda m: (m.count("_"), m.split("_")[0], ROUGE_TYPES.index(m.rsplit("_", 1)[-1])),
    )
    return rouge + [m for m in PER_STORY if m in common]


def configuration_interval(config: Configuration, metric: str) -> tuple[Interval, int]:
    """The interval over seeds and prompts, and the number of prompts it rests on."""
    scores = config.prompt_scores(metric)
    if not scores:  # its seeds scored no prompt in common (one failed before its test)
        return Interval(math.nan, math.nan, math.nan), 0
    matrix = np.array(list(scores.values()), dtype=float).T  # seeds x prompts
    return seeds_interval(matrix), len(scores)


def comparison(config: Configuration, baseline: Configuration, metric: str) -> str:
    """The paired difference on the shared prompts (each prompt's score averaged over the
    configuration's seeds), and what it says."""
    ours, theirs = config.prompt_scores(metric), baseline.prompt_scores(metric)
    shared = [key for key in ours if key in theirs]
    if len(shared) < 2:
        return "no shared prompts"
    difference = paired_difference(
        [np.mean(ours[key]) for key in shared], [np.mean(theirs[key]) for key in shared]
    )
    mode = direction(metric)
    if mode is None:  # no better side (story length): say which way it differs
        said = "higher" if difference.low > 0 else "lower" if difference.high < 0 else None
        said = said or "not distinguishable"
    else:
        said = verdict(difference, mode)
    return f"{said} ({difference.mean:+.3g} [{difference.low:+.3g}, {difference.high:+.3g}])"


def find_baseline(configs: list[Configuration], name: str | None) -> Configuration:
    if name is None:
        return configs[0]
    for config in configs:
        if any(run.name == name for run in config.runs):
            return config
    names = ", ".join(run.name for config in configs for run in config.runs)
    raise StorygenError(
        f"--baseline {name}: no run of that name has per-story scores; pick one of: {names}."
    )


def intervals_section(
    runs: list[ComparedRun], shared: set[str], baseline_name: str | None = None
) -> list[str]:
    """Markdown lines; `runs` come best first, so the first configuration is the best."""
    lines = ["", "## How sure: 95% intervals over prompts", ""]
    configs = configurations(runs)
    if not configs:
        if baseline_name is not None:
            find_baseline(configs, baseline_name)
        return lines + [
            "No run kept per-story scores (`scores` in its generations JSONL; runs trained "
            "before storygen wrote them have none)."
        ]
    metrics = story_metrics(configs)
    baseline = find_baseline(configs, baseline_name)
    lines.append(
        "Mean and 95% bootstrap interval of each story metric over the prompts (BCa; over "
        "seeds and prompts where a configuration ran with several seeds: runs that differ "
        "only in `seed` are one configuration)."
    )
    lines += ["", "| configuration | runs | seeds | prompts | " + " | ".join(metrics) + " |"]
    lines.append("|:---|:---|" + "---:|" * (2 + len(metrics)))
    for config in configs:
        cells = [configuration_interval(config, metric) for metric in metrics]
        names = ", ".join(run.name for run in config.runs)
        prompts = min(count for _, count in cells)
        row = [config.label(shared), names, str(len(config.runs)), str(prompts)]
        lines.append("| " + " | ".join(row + [str(interval) for interval, _ in cells]) + " |")
    lines += [
        "",
        f"Against {baseline.label(shared)} ({'--baseline' if baseline_name else 'the best'}): "
        "the mean difference on the prompts both scored and its 95% paired bootstrap "
        "interval; better or worse only when the interval leaves out zero.",
        "",
        "| configuration | " + " | ".join(metrics) + " |",
        "|:---|" + "---:|" * len(metrics),
    ]
    for config in configs:
        if config is baseline:
            cells = ["baseline"] * len(metrics)
        else:
            cells = [comparison(config, baseline, metric) for metric in metrics]
        lines.append("| " + " | ".join([config.label(shared), *cells]) + " |")
    return lines
