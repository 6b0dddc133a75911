from __future__ import annotations

import pytest

from storygen.metrics.diversity import distinct_n, repetition_rate
from storygen.metrics.lengths import length_distance, length_summary, word_counts
from storygen.metrics.story import score_stories


def test_word_counts_and_summary() -> None:
    assert word_counts(["one two three", "", "a  b\nc d"]) == [3, 0, 4]
    summary = length_summary([10, 20, 30, 40, 50])
    assert summary == {"mean": 30.0, "median": 30.0, "p10": 14.0, "p90": 46.0}


def test_length_distance_between_distributions() -> None:
    assert length_distance([10, 20], [10, 20]) == {"wasserstein": 0.0, "ks": 0.0}
    # shifting every story by 5 words moves the distribution by exactly 5
    assert length_distance([15, 25], [10, 20]) == {"wasserstein": 5.0, "ks": 0.5}


def test_distinct_n_pools_generations() -> None:
    # unigrams: the cat the dog -> {the, cat, dog} of 4; bigrams: 3 unique of 3
    assert distinct_n(["the cat", "the dog"], 1) == pytest.approx(3 / 4)
    assert distinct_n(["the cat the dog"], 2) == pytest.approx(3 / 3)
    assert distinct_n(["a a a a"], 2) == pytest.approx(1 / 3)
    assert distinct_n([""], 1) == 0.0


def test_repetition_rate_within_a_story() -> None:
    assert repetition_rate("the cat sat on the mat", 3) == 0.0
    # 6 trigrams: (a b c) x2 repeated... a b c a b c a b -> abc bca cab abc bca cab: 3 unique
    assert repetition_rate("a b c a b c a b", 3) == pytest.approx(0.5)
    assert repetition_rate("too short", 3) == 0.0


def test_score_stories_combines_every_figure() -> None:
    metrics = score_stories(
        ["The cat sat.", "A dog ran far away."], ["The cat sat.", "A dog."], [True, False]
    )
    assert metrics["eos_rate"] == 0.5
    assert metrics["rouge1"] == pytest.approx((1.0 + 2 * 2 / 7) / 2)
    assert metrics["len_mean"] == 4.0 and metrics["ref_len_mean"] == 2.5
    assert {
        "distinct1",
        "distinct2",
        "repetition3",
        "len_wasserstein",
        "len_ks",
        "rougeLsum",
        "len_p90",
    } <= metrics.keys()
