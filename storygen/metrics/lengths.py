"""How long generated stories are, against the references: summary statistics and distance."""

from __future__ import annotations

import numpy as np
from scipy.stats import ks_2samp, wasserstein_distance


def word_counts(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def length_summary(counts: list[int]) -> dict[str, float]:
    """Mean, median, 10th and 90th percentile of word counts."""
    if not counts:
        return {"mean": 0.0, "median": 0.0, "p10": 0.0, "p90": 0.0}
    values = np.asarray(counts, dtype=float)
    p10, median, p90 = np.percentile(values, [10, 50, 90])
    return {
        "mean": float(values.mean()),
        "median": float(median),
        "p10": float(p10),
        "p90": float(p90),
    }


def length_distance(generated: list[int], reference: list[int]) -> dict[str, float]:
    """Earth mover's distance in words, and the two-sample Kolmogorov-Smirnov statistic."""
    if not generated or not reference:
        return {"wasserstein": 0.0, "ks": 0.0}
    return {
        "wasserstein": float(wasserstein_distance(generated, reference)),
        "ks": float(ks_2samp(generated, reference).statistic),
    }
