"""Intervals over prompts against the closed forms they approach, and the verdicts they give."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from storygen.metrics.intervals import (
    Interval,
    mean_interval,
    paired_difference,
    seeds_interval,
    verdict,
)
from storygen.metrics.story import PER_STORY, per_story_scores, score_stories

Z = norm.ppf(0.975)


def normal_interval(values: np.ndarray) -> tuple[float, float]:
    """The closed form the bootstrap approaches for a mean: mean +- z * s / sqrt(n)."""
    half = Z * values.std(ddof=1) / math.sqrt(values.size)
    return values.mean() - half, values.mean() + half


def test_interval_of_a_mean_matches_the_closed_form() -> None:
    scores = np.random.default_rng(7).normal(0.3, 0.1, size=400)  # ROUGE-like, 400 prompts
    interval = mean_interval(scores)
    low, high = normal_interval(scores)
    assert interval.mean == pytest.approx(scores.mean())
    # within 5% of the closed form's half-width (Monte Carlo and the sample's own skew)
    tolerance = 0.05 * (high - low) / 2
    assert interval.low == pytest.approx(low, abs=tolerance)
    assert interval.high == pytest.approx(high, abs=tolerance)


def test_interval_of_a_rate_matches_the_wald_interval() -> None:
    ended = np.random.default_rng(3).random(2000) < 0.3  # stories ending with EOS
    p, n = ended.mean(), ended.size
    half = Z * math.sqrt(p * (1 - p) / n)
    interval = mean_interval(ended.astype(float))
    assert interval.low == pytest.approx(p - half, abs=0.05 * half)
    assert interval.high == pytest.approx(p + half, abs=0.05 * half)


def test_degenerate_scores() -> None:
    assert mean_interval([1.0, 1.0, 1.0]) == Interval(1.0, 1.0, 1.0)
    one = mean_interval([0.4])
    assert one.mean == 0.4 and math.isnan(one.low) and math.isnan(one.high)


def test_seeds_and_prompts_interval() -> None:
    rng = np.random.default_rng(11)
    prompts = rng.normal(0.3, 0.1, size=300)
    # three seeds that scored every prompt alike: resampling seeds adds nothing
    alike = seeds_interval(np.stack([prompts] * 3))
    low, high = normal_interval(prompts)
    assert alike.low == pytest.approx(low, abs=0.05 * (high - low))
    assert alike.high == pytest.approx(high, abs=0.05 * (high - low))
    # seeds that shift every prompt by -0.05, 0, +0.05: wider than the prompts alone give
    shifted = seeds_interval(np.stack([prompts - 0.05, prompts, prompts + 0.05]))
    assert shifted.mean == pytest.approx(prompts.mean())
    assert shifted.high - shifted.low > 2 * (high - low)


def test_identical_runs_are_not_distinguishable_and_a_shift_is() -> None:
    scores = np.random.default_rng(5).uniform(0.1, 0.5, size=32)
    same = paired_difference(scores, scores)
    assert same == Interval(0.0, 0.0, 0.0)
    assert verdict(same, "max") == verdict(same, "min") == "not distinguishable"
    # the same prompts each 0.02 better: paired, the difference is sure though the runs'
    # own intervals overlap
    better = scores + 0.02 + np.random.default_rng(6).normal(0, 0.005, size=32)
    assert mean_interval(better).low < mean_interval(scores).high
    difference = paired_difference(better, scores)
    assert difference.low > 0
    assert verdict(difference, "max") == "better"
    assert verdict(difference, "min") == "worse"
    # noise around the same scores: not distinguishable
    noisy = scores + np.random.default_rng(8).normal(0, 0.05, size=32)
    assert verdict(paired_difference(noisy - (noisy - scores).mean(), scores), "max") == (
        "not distinguishable"
    )


def test_per_story_scores_average_to_the_run_metrics() -> None:
    generations = ["The cat sat on the mat.", "A dog ran far away.", "Birds sang and sang."]
    references = ["The cat sat.", "A dog ran home to its family.", "The birds were singing."]
    ended = [True, False, True]
    stories = per_story_scores(generations, references, ended)
    metrics = score_stories(generations, references, ended)
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", *PER_STORY):
        assert np.mean([story[key] for story in stories]) == pytest.approx(metrics[key]), key
    assert [story["len_mean"] for story in stories] == [6, 5, 4]
    assert [story["eos_rate"] for story in stories] == [1.0, 0.0, 1.0]
