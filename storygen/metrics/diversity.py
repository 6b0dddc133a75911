"""Diversity across generations (distinct-n) and repetition within each story."""

from __future__ import annotations


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: list[str], n: int) -> float:
    """Unique n-grams over all n-grams, pooled across the generations (Li et al., 2016)."""
    grams = [gram for text in texts for gram in _ngrams(text.lower().split(), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def repetition_rate(text: str, n: int = 3) -> float:
    """Share of a story's n-grams that repeat an earlier one: 0 for no loops, near 1 for a loop."""
    grams = _ngrams(text.lower().split(), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0
