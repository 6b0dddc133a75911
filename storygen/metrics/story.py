"""All story metrics of one set of generations, as flat names for loggers."""

from __future__ import annotations

from statistics import fmean

from storygen.metrics.diversity import distinct_n, repetition_rate
from storygen.metrics.lengths import length_distance, length_summary, word_counts
from storygen.metrics.rouge import STORYGEN, RougeConvention, rouge_per_story, rouge_under


def score_stories(
    generations: list[str],
    references: list[str],
    ended_with_eos: list[bool],
    rouge: tuple[RougeConvention, ...] = (STORYGEN,),
) -> dict[str, float]:
    """ROUGE under each convention, lengths (generated and reference), their distance,
    diversity and EOS rate."""
    generated_words, reference_words = word_counts(generations), word_counts(references)
    metrics = rouge_under(rouge, generations, references)
    metrics |= {f"len_{k}": v for k, v in length_summary(generated_words).items()}
    metrics |= {f"ref_len_{k}": v for k, v in length_summary(reference_words).items()}
    metrics |= {f"len_{k}": v for k, v in length_distance(generated_words, reference_words).items()}
    metrics["distinct1"] = distinct_n(generations, 1)
    metrics["distinct2"] = distinct_n(generations, 2)
    metrics["repetition3"] = fmean(repetition_rate(g) for g in generations) if generations else 0.0
    metrics["eos_rate"] = sum(ended_with_eos) / len(ended_with_eos) if ended_with_eos else 0.0
    return metrics


# the run-level metrics that are a mean over stories, so each story has its own value: ROUGE
# (every convention's keys), these, and nothing pooled (distinct-n, length percentiles and
# distances are figures of the whole set)
PER_STORY = ("len_mean", "repetition3", "eos_rate")


def per_story_scores(
    generations: list[str],
    references: list[str],
    ended_with_eos: list[bool],
    rouge: tuple[RougeConvention, ...] = (STORYGEN,),
) -> list[dict[str, float]]:
    """Each story's value of every metric that `score_stories` averages over stories, under the
    same name (`rouge1`, `len_mean` (its words), `repetition3`, `eos_rate` (1 or 0)): the mean
    of a column is the run's metric, and an interval over prompts resamples the column."""
    columns: dict[str, list[float]] = {}
    for convention in rouge:
        columns |= rouge_per_story(generations, references, convention)
    columns["len_mean"] = [float(n) for n in word_counts(generations)]
    columns["repetition3"] = [repetition_rate(g) for g in generations]
    columns["eos_rate"] = [float(ended) for ended in ended_with_eos]
    return [dict(zip(columns, values)) for values in zip(*columns.values())]
