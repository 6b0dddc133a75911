"""How sure a story metric is: a 95% bootstrap interval over prompts for a run's mean, over
seeds and prompts for a configuration trained with several seeds, and a paired interval on the
difference between two configurations on the prompts they share."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import bootstrap

CONFIDENCE = 0.95
RESAMPLES = 9999  # scipy's default
SEED = 0  # the same scores give the same interval in every report


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% interval (nan bounds when fewer than two prompts were scored)."""

    mean: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        if math.isnan(self.low):
            return f"{self.mean:.4g}"
        return f"{self.mean:.4g} [{self.low:.4g}, {self.high:.4g}]"


def mean_interval(scores: Sequence[float]) -> Interval:
    """The mean of per-prompt scores with scipy's BCa bootstrap interval over prompts. Scores
    that are all equal (every story ended with EOS; two identical runs' differences) have no
    spread to resample: their interval is the value itself."""
    values = np.asarray(scores, dtype=float)
    mean = float(values.mean()) if values.size else math.nan
    if values.size < 2:
        return Interval(mean, math.nan, math.nan)
    if np.all(values == values[0]):
        return Interval(mean, mean, mean)
    with warnings.catch_warnings():  # BCa on a few near-degenerate scores warns and gives nan
        warnings.simplefilter("ignore")
        result = bootstrap(
            (values,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=RESAMPLES,
            random_state=np.random.default_rng(SEED),
        )
    low, high = result.confidence_interval
    if math.isnan(low) or math.isnan(high):  # then the percentile interval, which always exists
        low, high = np.percentile(result.bootstrap_distribution, [2.5, 97.5])
    return Interval(mean, float(low), float(high))


def seeds_interval(scores: np.ndarray) -> Interval:
    """The mean of a seeds x prompts matrix with a two-level percentile bootstrap: seeds
    resampled, then prompts, so the interval holds both the training seed's spread and the
    prompts'. scipy's bootstrap resamples one level only; one seed is `mean_interval`."""
    scores = np.asarray(scores, dtype=float)
    seeds, prompts = scores.shape
    if seeds == 1:
        return mean_interval(scores[0])
    rng = np.random.default_rng(SEED)
    means = []
    for start in range(0, RESAMPLES, 500):  # in batches: resamples x seeds x prompts floats
        batch = min(500, RESAMPLES - start)
        rows = rng.integers(seeds, size=(batch, seeds))
        columns = rng.integers(prompts, size=(batch, prompts))
        means.append(scores[rows[:, :, None], columns[:, None, :]].mean(axis=(1, 2)))
    low, high = np.percentile(np.concatenate(means), [2.5, 97.5])
    return Interval(float(scores.mean()), float(low), float(high))


def paired_difference(scores: Sequence[float], baseline: Sequence[float]) -> Interval:
    """The mean difference (scores - baseline) on the same prompts, with its interval: a
    paired bootstrap resamples prompts, keeping each prompt's two scores together."""
    return mean_interval(np.asarray(scores, dtype=float) - np.asarray(baseline, dtype=float))


def verdict(difference: Interval, mode: str) -> str:
    """better / worse when the interval of the difference excludes zero, on the side `mode`
    (max or min) says is better; else not distinguishable."""
    if not difference.excludes_zero():
        return "not distinguishable"
    higher = difference.low > 0
    return "better" if higher == (mode == "max") else "worse"
