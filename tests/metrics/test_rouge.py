from __future__ import annotations

import numpy as np
import pytest
from rouge_score import rouge_scorer

from storygen.errors import StorygenError
from storygen.metrics import HF, STORYGEN, RougeConvention, rouge_scores
from storygen.metrics.rouge import as_conventions

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


# Stories with line breaks inside (as TinyStories and cleaned WritingPrompts have them) and
# inflected words (stemming matches "played"/"plays"): both conventions' choices matter here.
STORIES = [
    (
        "Tom played in the park. He was running fast.\nThen it rained. Tom went home.",
        "Tom plays in the park and runs. It rained.\nHe walked home, sad.",
    ),
    (
        "Lily found a box.\nInside were shiny stones. She smiled and counted them.",
        "Lily finds a big box. The box had stones inside.\nShe was smiling.",
    ),
    ("The dog barked.", "The dogs were barking at the cats."),
    # one line, sentences in another order: only a sentence split finds both (union LCS)
    ("He went home. Tom played ball.", "Tom played ball. He went home."),
]


def evaluate_rouge(predictions, references, use_aggregator):
    """rouge_score called as Hugging Face evaluate's rouge module (metrics/rouge/rouge.py)
    calls it at its defaults: rouge_types None -> all four, use_stemmer=False, tokenizer=None,
    scorer.score(ref, pred) per pair, then BootstrapAggregator's mid F-measure, or the list of
    F-measures with use_aggregator=False."""
    from rouge_score import scoring

    rouge_types = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
    scorer = rouge_scorer.RougeScorer(rouge_types=rouge_types, use_stemmer=False, tokenizer=None)
    aggregator, scores = scoring.BootstrapAggregator(), []
    for ref, pred in zip(references, predictions):
        score = scorer.score(ref, pred)
        aggregator.add_scores(score) if use_aggregator else scores.append(score)
    if use_aggregator:
        return {key: value.mid.fmeasure for key, value in aggregator.aggregate().items()}
    return {key: [score[key].fmeasure for score in scores] for key in scores[0]}


def test_hf_preset_is_evaluates_rouge_at_its_defaults() -> None:
    predictions, references = map(list, zip(*STORIES))
    per_story = evaluate_rouge(predictions, references, use_aggregator=False)
    expected = {f"hf_{key}": sum(values) / len(values) for key, values in per_story.items()}
    actual = rouge_scores(predictions, references, HF)
    assert actual == pytest.approx(expected, abs=1e-12)
    # evaluate's default reports the bootstrap median of that mean: the same up to resampling
    np.random.seed(0)
    bootstrap = evaluate_rouge(predictions, references, use_aggregator=True)
    for key, value in bootstrap.items():
        assert actual[f"hf_{key}"] == pytest.approx(value, abs=0.02)


def test_conventions_differ_where_the_study_says() -> None:
    predictions, references = map(list, zip(*STORIES))
    ours, hf = rouge_scores(predictions, references), rouge_scores(predictions, references, HF)
    assert set(ours) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert ours["rouge1"] > hf["hf_rouge1"]  # stemming matches play/played, dog/dogs
    # Punkt sentences give rougeLsum more units than the two line breaks do
    assert ours["rougeLsum"] != pytest.approx(hf["hf_rougeLsum"], abs=1e-3)
    sentences_nostem = RougeConvention("mine", use_stemmer=False, lsum_split="sentences")
    mine = rouge_scores(predictions, references, sentences_nostem)
    assert mine["mine_rouge1"] == pytest.approx(hf["hf_rouge1"])
    assert mine["mine_rougeLsum"] != pytest.approx(hf["hf_rougeLsum"], abs=1e-3)


def test_named_conventions_are_fixed_and_names_unique() -> None:
    with pytest.raises(StorygenError, match="rouge.hf: the `hf` convention is use_stemmer=False"):
        RougeConvention("hf", use_stemmer=True, lsum_split="newlines")
    with pytest.raises(StorygenError, match="lsum_split='lines' is not known"):
        RougeConvention("mine", lsum_split="lines")
    with pytest.raises(StorygenError, match="no convention is left"):
        as_conventions({"storygen": None})
    assert as_conventions(
        {
            "storygen": {"use_stemmer": True, "lsum_split": "sentences"},
            "hf": {"use_stemmer": False, "lsum_split": "newlines"},
        }
    ) == (STORYGEN, HF)
