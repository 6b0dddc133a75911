from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from storygen.metrics import rouge_scores

PAIRS = [
    ("The cat sat on the mat. It was happy.", "A cat was sitting on the mat. The cat was happy."),
    (
        "Tom ran to the park! He played all day.",
        "Tom went to the park and played. Then he went home.",
    ),
    ("Nothing in common here", "Completely different words appear"),
]


def test_rouge_matches_google_rouge_score_with_sentences_per_line() -> None:
    predictions, references = zip(*PAIRS)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=True)
    sentence_lines = {  # what a Punkt splitter gives, one sentence per line
        PAIRS[0][0]: "The cat sat on the mat.\nIt was happy.",
        PAIRS[0][1]: "A cat was sitting on the mat.\nThe cat was happy.",
        PAIRS[1][0]: "Tom ran to the park!\nHe played all day.",
        PAIRS[1][1]: "Tom went to the park and played.\nThen he went home.",
    }
    expected = {key: 0.0 for key in ("rouge1", "rouge2", "rougeL", "rougeLsum")}
    for prediction, reference in PAIRS:
        scores = scorer.score(
            sentence_lines.get(reference, reference), sentence_lines.get(prediction, prediction)
        )
        for key in expected:
            expected[key] += scores[key].fmeasure / len(PAIRS)
    actual = rouge_scores(list(predictions), list(references))
    assert actual == pytest.approx(expected, abs=1e-6)
    assert actual["rougeLsum"] != pytest.approx(actual["rougeL"], abs=1e-3)  # sentences matter


def test_identical_texts_score_one_and_unrelated_ones_zero() -> None:
    assert rouge_scores(["A dog barked."], ["A dog barked."]) == pytest.approx(
        {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0}
    )
    assert rouge_scores(["red blue"], ["green yellow"])["rouge1"] == 0.0


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge_scores(["a", "b"], ["a"])
