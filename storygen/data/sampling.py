"""Training orders that depend only on the seed and the epoch, so runs repeat and resumes
(which fast-forward to their batch within the epoch) see the batches they would have seen.

Both samplers are stateful in torchdata's sense: the loader's saved position holds the epoch
whose order it was in and how far it got, so a resume continues that very order whenever
the loader is restored, rather than the order of whatever epoch the sampler was last told.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

import torch
from torch.utils.data import BatchSampler, RandomSampler, Sampler

T = TypeVar("T")


class ResumableOrder(Iterator[T], Generic[T]):
    """One epoch's order with a position that can be saved and restored."""

    def __init__(self, order: list[T]) -> None:
        self.order = order
        self.position = 0

    def __next__(self) -> T:
        if self.position >= len(self.order):
            raise StopIteration
        self.position += 1
        return self.order[self.position - 1]

    def state_dict(self) -> dict[str, int]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position = state["position"]


class LengthGroupedBatchSampler(BatchSampler):
    """Batches of stories of similar length, in an order that changes every epoch.

    Takes its sampler's order (an `EpochShuffleSampler`; under DDP, Lightning's distributed
    wrapper of it, so each rank groups its own share), sorts it by length within windows of
    `window_batches` batches, and shuffles the batches. Lightning calls `set_epoch` on
    `batch_sampler.sampler`, so the epoch reaches both shuffles. Larger windows pad less and
    mix less.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool = False,
        lengths: Sequence[int] = (),
        window_batches: int = 50,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.lengths = lengths
        self.window = batch_size * window_batches

    def state_dict(self) -> dict[str, int]:
        return {"epoch": getattr(self.sampler, "epoch", 0)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(state["epoch"])

    def __iter__(self) -> ResumableOrder[list[int]]:
        order = list(self.sampler)
        batches = []
        for start in range(0, len(order), self.window):
            window = sorted(order[start : start + self.window], key=self.lengths.__getitem__)
            batches += [
                window[i : i + self.batch_size] for i in range(0, len(window), self.batch_size)
            ]
        if self.drop_last:
            batches = [batch for batch in batches if len(batch) == self.batch_size]
        seed = getattr(self.sampler, "seed", 0) + getattr(self.sampler, "epoch", 0)
        generator = torch.Generator().manual_seed(seed)
        return ResumableOrder(
            [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        )


class EpochShuffleSampler(RandomSampler):
    """A fresh permutation every epoch, drawn from `seed + epoch` (set by Lightning through
    `set_epoch`) rather than from a generator that carries state from epoch to epoch.

    A RandomSampler, so Lightning knows it shuffles: under DDP it then gives each rank a
    share of a per-epoch shuffle (`DistributedSampler(shuffle=True)`), alone or inside the
    length-grouped batch sampler, rather than a fixed slice of the dataset.
    """

    def __init__(self, length: int, seed: int = 0) -> None:
        super().__init__(range(length))
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data_source)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = state["epoch"]

    def __iter__(self) -> ResumableOrder[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return ResumableOrder(torch.randperm(len(self.data_source), generator=generator).tolist())
