"""ROUGE-1/2/L/Lsum of generated stories against references, as Google's rouge_score computes it."""

from __future__ import annotations

from rouge_score import rouge_scorer

from storygen.data.sentences import split_sentences

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def rouge_scores(
    predictions: list[str], references: list[str], use_stemmer: bool = True
) -> dict[str, float]:
    """Mean F-measure of each ROUGE type over (prediction, reference) pairs.

    rougeLsum scores sentence by sentence: rouge_score reads sentences as lines, so both
    texts are split by a packaged Punkt model and joined one sentence per line.
    """
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; pair them up."
        )
    if not predictions:
        return dict.fromkeys(ROUGE_TYPES, 0.0)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=use_stemmer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(_one_sentence_per_line(reference), _one_sentence_per_line(prediction))
        for rouge_type in ROUGE_TYPES:
            totals[rouge_type] += scores[rouge_type].fmeasure
    return {rouge_type: total / len(predictions) for rouge_type, total in totals.items()}


def _one_sentence_per_line(text: str) -> str:
    return "\n".join(split_sentences(text))
