from __future__ import annotations

import random

import lightning as L
import torch
from lightning.pytorch.utilities.data import _is_dataloader_shuffled
from torch.utils.data.distributed import DistributedSampler

from storygen.data.datamodule import StoryDataModule
from storygen.data.sampling import EpochShuffleSampler, LengthGroupedBatchSampler
from storygen.data.tinystories import TinyStoriesCorpus
from storygen.models.loader import build_offline_gpt2_tokenizer


def padding_share(batches: list[list[int]], lengths: list[int]) -> float:
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    return 1 - sum(lengths) / padded


def grouped(lengths: list[int], batch_size: int, seed: int, **options) -> LengthGroupedBatchSampler:
    sampler = EpochShuffleSampler(len(lengths), seed=seed)
    return LengthGroupedBatchSampler(sampler, batch_size, lengths=lengths, **options)


def test_length_grouping_covers_every_example_once_and_pads_less() -> None:
    lengths = [random.Random(i).randint(20, 600) for i in range(1000)]
    batches = list(sampler := grouped(lengths, batch_size=8, seed=1, window_batches=25))
    assert len(batches) == len(sampler) == 125
    assert sorted(i for b in batches for i in b) == list(range(1000))
    shuffled = list(range(1000))
    random.Random(0).shuffle(shuffled)
    random_batches = [shuffled[i : i + 8] for i in range(0, 1000, 8)]
    assert padding_share(batches, lengths) < padding_share(random_batches, lengths) / 4


def test_length_grouping_repeats_per_seed_and_splits_between_ranks() -> None:
    lengths = list(range(100))
    first = list(grouped(lengths, batch_size=4, seed=3))
    assert first == list(grouped(lengths, batch_size=4, seed=3))
    # under DDP Lightning hands the batch sampler a shuffling DistributedSampler in place of
    # its own (the loaders below tell Lightning they shuffle)
    ranks = [DistributedSampler(range(100), num_replicas=2, rank=rank, seed=3) for rank in (0, 1)]
    shares = [list(LengthGroupedBatchSampler(rank, 4, lengths=lengths)) for rank in ranks]
    assert sorted(i for share in shares for b in share for i in b) == list(range(100))


class RecordBatches(L.LightningModule):
    """Trains nothing; keeps a fingerprint (token-id sum) of every row of every batch, per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list[list[int]]] = {}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.setdefault(self.current_epoch, []).append(batch["input_ids"].sum(dim=1).tolist())
        return self.weight.square().sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_trainer_sees_a_new_order_every_epoch_with_and_without_length_groups() -> None:
    tokenizer = build_offline_gpt2_tokenizer()
    for group_by_length in (False, True):
        data = StoryDataModule(
            TinyStoriesCorpus(source="sample"),
            tokenizer,
            batch_size=4,
            max_train_samples=32,
            group_by_length=group_by_length,
            cache_dir=None,
        )
        model = RecordBatches()
        L.Trainer(
            max_epochs=2,
            accelerator="cpu",
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            limit_val_batches=0,
        ).fit(model, datamodule=data)
        assert len(model.seen[0]) == len(model.seen[1]) == 8
        assert model.seen[0] != model.seen[1], f"group_by_length={group_by_length}"
        # what Lightning reads to pick DistributedSampler(shuffle=...) under DDP
        assert _is_dataloader_shuffled(data.train_dataloader()), f"{group_by_length=}"
