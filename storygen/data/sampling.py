"""Training orders that depend only on the seed and the epoch, so runs repeat and resumes
(which fast-forward to their batch within the epoch) see the batches they would have seen."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffle, sort by length within windows of `window_batches` batches, shuffle the batches.

    Every example appears once per epoch; the order depends only on `seed` and the epoch (set
    by Lightning through `set_epoch`), so
    runs repeat. Larger windows pad less and mix less.
    """

    def __init__(
        self, lengths: list[int], batch_size: int, seed: int = 0, window_batches: int = 50
    ) -> None:
        self.lengths = lengths
        self.batch_size = batch_size
        self.seed = seed
        self.window = batch_size * window_batches
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        batches = []
        for start in range(0, len(order), self.window):
            window = sorted(order[start : start + self.window], key=self.lengths.__getitem__)
            batches += [
                window[i : i + self.batch_size] for i in range(0, len(window), self.batch_size)
            ]
        for position in torch.randperm(len(batches), generator=generator).tolist():
            yield batches[position]


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation every epoch, drawn from `seed + epoch` (set by Lightning through
    `set_epoch`) rather than from a generator that carries state from epoch to epoch."""

    def __init__(self, length: int, seed: int = 0) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        yield from torch.randperm(self.length, generator=generator).tolist()
