from __future__ import annotations

import random

from storygen.data.sampling import LengthGroupedBatchSampler


def padding_share(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / padded


def test_length_grouping_covers_every_example_once_and_pads_less() -> None:
    lengths = [random.Random(i).randint(20, 600) for i in range(1000)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, seed=1, window_batches=25)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 125
    assert sorted(i for b in batches for i in b) == list(range(1000))
    shuffled = list(range(1000))
    random.Random(0).shuffle(shuffled)
    random_batches = [shuffled[i : i + 8] for i in range(0, 1000, 8)]
    assert padding_share(batches, lengths) < padding_share(random_batches, lengths) / 4


def test_length_grouping_repeats_per_seed_and_changes_per_epoch() -> None:
    lengths = list(range(100))
    first = list(LengthGroupedBatchSampler(lengths, batch_size=4, seed=3))
    assert first == list(LengthGroupedBatchSampler(lengths, batch_size=4, seed=3))
    later = LengthGroupedBatchSampler(lengths, batch_size=4, seed=3)
    later.set_epoch(1)
    assert list(later) != first
