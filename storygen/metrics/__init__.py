"""Story metrics: ROUGE against reference stories, lengths and diversity of generations."""

from storygen.metrics.rouge import HF, STORYGEN, RougeConvention, rouge_scores

__all__ = ["HF", "STORYGEN", "RougeConvention", "rouge_scores"]
