"""Which way is better for each logged metric: the one place that W&B's summaries (best of a
run) and `storygen.compare` (best run first) read it from."""

from __future__ import annotations

# the stages whose metrics W&B's summary keeps the best of (train/loss is too noisy to)
SUMMARIZED_STAGES = ("val/", "test/")
# by the metric's name without its stage (`val/hf_rouge1` -> `hf_rouge1`); the first rule that
# matches decides
HIGHER_IS_BETTER = ("rouge", "distinct", "eos_rate", "tokens_per_s")
LOWER_IS_BETTER = ("loss", "ppl", "repetition", "len_wasserstein", "len_ks", "gen_truncated")


def direction(metric: str) -> str | None:
    """`max` or `min` where one way is better, None for a description with no better side
    (story lengths, the generation cap): those are compared to the references instead."""
    name = metric.rsplit("/", 1)[-1]
    if any(word in name for word in HIGHER_IS_BETTER):
        return "max"
    if any(word in name for word in LOWER_IS_BETTER):
        return "min"
    return None
