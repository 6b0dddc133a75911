"""Story metrics: ROUGE against reference stories, lengths and diversity of generations."""

from storygen.metrics.rouge import rouge_scores

__all__ = ["rouge_scores"]
