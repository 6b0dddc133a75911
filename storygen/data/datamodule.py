"""StoryDataModule: one LightningDataModule for every story corpus.

The corpus (TinyStories, WritingPrompts, ...) is injected by config and yields
(prompt, story) pairs per split; this module formats, tokenizes and batches them, and
hands the story callbacks a fixed set of prompts with their reference stories.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow.compute as pc
import torch
from datasets import Dataset, DatasetDict, IterableDataset
from datasets.distributed import split_dataset_by_node
from lightning.pytorch import LightningDataModule
from torchdata.stateful_dataloader import StatefulDataLoader
from transformers import PreTrainedTokenizerBase

from storygen.data import formatting, packing, sentences, streams
from storygen.data.cache import cache_key, library_versions, load_or_prepare, source_digest
from storygen.data.collate import PromptMaskingCollator
from storygen.data.formatting import (
    LAYOUT_VERSION,
    StoryFormat,
    fewest_bytes_filling,
    tokenize_for_training,
    tokenize_stories,
)
from storygen.data.packing import pack_stories
from storygen.data.sampling import EpochShuffleSampler, LengthGroupedBatchSampler
from storygen.data.streams import Split, StreamLoader, map_split
from storygen.errors import StorygenError

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")
TOKENIZE_TRAIN = ("ahead", "as_loaded")
# data.tokenize_train=null tokenizes a train split of this many bytes or more as it loads, when
# nothing needs its tokens first. Ahead, 64 MB (~60,000 TinyStories stories) take ~15 s on 2
# cores and full TinyStories' 2 GB ~9 min, the GPU waiting; as loaded, a batch of 8 stories
# costs a loader worker ~3 ms more (8 WritingPrompts stories, cleaned there too: ~25 ms;
# benchmarks/data_prep.py). Below it, ahead costs seconds and the plan counts the tokens.
AS_LOADED_BYTES = 64_000_000


def preparing_code(corpus: StoryCorpus) -> list:
    """The code whose output the cache holds, hashed into its key: the corpus's module (read,
    clean, split), sentences, streams, formatting (tokenize), packing, and the datamodule's own
    steps. tests/data/test_cache.py checks that nothing else of storygen runs while preparing."""
    return [
        sys.modules[type(corpus).__module__],
        sentences,
        streams,
        formatting,
        packing,
        StoryDataModule._prepare,
        StoryDataModule._limit,
        StoryDataModule._may_tokenize_as_loaded,
        StoryDataModule._tokenizes_as_loaded,
        StoryDataModule._without_prompts_filling_max_length,
    ]


class StoryCorpus(Protocol):
    finish_train: Callable[[dict], dict] | None
    """Completes a batch of train rows that load(finish_train_later=True) left unfinished (as
    the loader reads them, or ahead); None where load leaves nothing to finish."""

    def load(
        self,
        streaming: bool = False,
        num_proc: int | None = None,
        work_dir: Path | None = None,
        train_openings: bool = True,
        finish_train_later: bool = False,
    ) -> dict[str, Split]:
        """Splits train/validation/test with string columns `prompt` and `story`; with
        `streaming`, train is an IterableDataset read as training goes. `num_proc` processes
        clean or split the stories (None: chosen by streams.processes). Local files are read
        into Arrow files under `work_dir` (None: into memory). Without `train_openings`, train's
        stories may come whole with an empty prompt (nothing reads where they open). With
        `finish_train_later`, train's prompts are final but its stories may wait for
        finish_train."""

    def source_files(self) -> list[Path]:
        """Local files the corpus reads (none for the hub), so edits invalidate the cache."""

    def hub_revision(self) -> str | None:
        """The hub commit the corpus reads (None for local files), so updates invalidate it."""


@dataclass(frozen=True)
class StoryPrompt:
    """A prompt to generate from, as the model sees it, and the story it should resemble."""

    prompt: str
    model_input: str
    reference: str


def check_tokenize_train(
    tokenize_train: str | None, packing: bool, group_by_length: bool
) -> str | None:
    """data.tokenize_train as set, refusing as_loaded where packing or group_by_length need
    every story's tokens first."""
    if tokenize_train is not None and tokenize_train not in TOKENIZE_TRAIN:
        raise StorygenError(
            f"data.tokenize_train={tokenize_train!r} is not known; use one of "
            f"{', '.join(TOKENIZE_TRAIN)}, or null to choose by the split's size."
        )
    needs = [
        setting
        for setting, needed in (
            ("data.packing=true", packing),
            ("data.group_by_length=true", group_by_length),
        )
        if needed
    ]
    if tokenize_train == "as_loaded" and needs:
        raise StorygenError(
            f"data.tokenize_train=as_loaded cannot serve {' and '.join(needs)}, which "
            "need every train story's tokens before training; set data.tokenize_train=ahead "
            "(or null)."
        )
    return tokenize_train


class StoryDataModule(LightningDataModule):
    def __init__(
        self,
        corpus: StoryCorpus,
        tokenizer: PreTrainedTokenizerBase,
        prompt_template: str = "{prompt}",
        train_on_prompt: bool = True,
        max_length: int = 512,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        max_train_samples: int | None = None,
        max_eval_samples: int | None = None,
        seed: int = 3407,
        num_proc: int | None = None,
        cache_dir: str | None = None,
        group_by_length: bool = False,
        packing: bool = False,
        pack_whole_stories: bool = True,
        streaming: bool = False,
        shuffle_buffer: int = 10_000,
        tokenize_train: str | None = None,
    ) -> None:
        super().__init__()
        self.corpus = corpus
        self.tokenizer = tokenizer
        self.story_format = StoryFormat(prompt_template, train_on_prompt, max_length)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.max_samples = {
            "train": max_train_samples,
            "validation": max_eval_samples,
            "test": max_eval_samples,
        }
        self.seed = seed
        self.num_proc = num_proc
        self.group_by_length = group_by_length
        self.packing = packing
        self.pack_whole_stories = pack_whole_stories
        self.streaming = streaming
        self.shuffle_buffer = shuffle_buffer
        if streaming and group_by_length:
            raise StorygenError(
                "data.group_by_length=true sorts stories by length, which a stream does not "
                "know ahead; use data.packing=true with data.streaming=true instead."
            )
        self.tokenize_train = check_tokenize_train(tokenize_train, packing, group_by_length)
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.collator = PromptMaskingCollator(pad_token_id=tokenizer.pad_token_id)
        self.train_tokens = 0
        self.truncated: dict[str, int] = {}
        """stories per split cut at max_length (without EOS); a stream's train is not counted"""
        self.examples: dict[str, int] = {}
        """tokenized stories per split, before packing"""
        self.stories: dict[str, Split] | None = None
        self.tokenized: dict[str, Split] | None = None
        self._scratch: tempfile.TemporaryDirectory | None = None
        """holds the Arrow files of splits prepared without the cache, while they are in use"""

    def setup(self, stage: str | None = None) -> None:
        if self.tokenized is not None:
            return
        if self.streaming or self.cache_dir is None:
            # A stream cannot be cached; its evaluation splits are small enough to redo.
            self._scratch = tempfile.TemporaryDirectory(prefix="storygen-prepared-")
            prepared = self._prepare(Path(self._scratch.name))
        else:
            prepared = load_or_prepare(self.cache_dir, self.cache_key(), self._prepare)
        self.stories, self.tokenized = prepared["stories"], prepared["tokenized"]
        if "train" not in self.tokenized:  # tokenized as its batches load
            self.tokenized["train"] = self.stories["train"].with_transform(
                partial(
                    tokenize_for_training,
                    tokenizer=self.tokenizer,
                    story_format=self.story_format,
                    finish=self.corpus.finish_train,
                )
            )
        self.truncated, self.examples = (
            prepared["stats"]["truncated"],
            prepared["stats"]["examples"],
        )
        log.info(
            "Stories: %s",
            ", ".join(
                f"{split} {len(self.tokenized[split]):,}"
                if isinstance(self.tokenized[split], Dataset)
                else f"{split} streamed"
                for split in SPLITS
            ),
        )
        self._report_truncated()

    def train_size(self) -> tuple[int, int, int | None] | None:
        """(stories, rows, tokens) of the prepared train split, rows being packed rows when
        packing, tokens None when tokenized as loaded; None for a stream, whose length is
        known once it ends."""
        self.setup()
        train = self.tokenized["train"]
        if not isinstance(train, Dataset):
            return None
        if "input_ids" not in train.column_names:  # its stories, tokenized as they load
            return len(train), len(train), None
        table = train.with_format("arrow", columns=["input_ids"])[:]
        tokens = pc.sum(pc.list_value_length(table["input_ids"]))
        return self.examples["train"], len(train), int(tokens.as_py() or 0)

    def cache_key(self) -> str:
        """Everything the prepared splits depend on: inputs, settings, code and libraries."""
        return cache_key(
            self.corpus,
            self.corpus.source_files(),
            self.corpus.hub_revision(),
            self.tokenizer,
            self.story_format,
            self.tokenize_train,
            LAYOUT_VERSION,
            self.max_samples,
            self.packing and ("whole" if self.pack_whole_stories else "run-on"),
            source_digest(preparing_code(self.corpus)),
            library_versions(),
        )

    def _prepare(self, work_dir: Path) -> dict[str, dict[str, Split]]:
        finish = self.corpus.finish_train if self._may_tokenize_as_loaded() else None
        stories = self.corpus.load(
            streaming=self.streaming,
            num_proc=self.num_proc,
            work_dir=work_dir,
            train_openings=self.story_format.opening_shapes_tokens,
            finish_train_later=finish is not None,
        )
        for split in SPLITS:
            stories[split] = self._limit(split, stories[split])
        columns = stories["validation"].column_names
        as_loaded = self._tokenizes_as_loaded(stories["train"])
        if as_loaded and not self.story_format.train_on_prompt:
            kept = self._without_prompts_filling_max_length(stories["train"], finish)
            self._check_dropped("train", stories["train"], kept)
            stories["train"] = kept
        elif finish is not None and not as_loaded:  # a small split, finished ahead after all
            stories["train"] = map_split(
                stories["train"], finish, "Finishing (train)", num_proc=self.num_proc
            )
        ahead = [split for split in SPLITS if not (split == "train" and as_loaded)]
        tokenized = {
            split: map_split(
                stories[split],
                partial(tokenize_stories, tokenizer=self.tokenizer, story_format=self.story_format),
                f"Tokenizing ({split})",
                num_proc=self.num_proc,
                remove_columns=columns,
            )
            for split in ahead
        }
        for split in ahead:
            self._check_dropped(split, stories[split], tokenized[split])
        # counted before packing: the warning speaks of stories, not packed rows
        counted = {split: rows for split, rows in tokenized.items() if isinstance(rows, Dataset)}
        stats = {
            # summed in Arrow: a column of millions of rows is never a Python list
            "truncated": {
                split: pc.sum(rows.with_format("arrow")[:]["truncated"]).as_py() or 0
                for split, rows in counted.items()
            },
            "examples": {split: len(rows) for split, rows in counted.items()},
        }
        if as_loaded:  # its dropped stories are gone; its cuts are not known ahead
            stats["examples"]["train"] = len(stories["train"])
        tokenized = {split: rows.remove_columns("truncated") for split, rows in tokenized.items()}
        if self.packing:
            # Validation and test stay one story per row: their loss reads the same either way.
            tokenized["train"] = map_split(
                tokenized["train"],
                partial(
                    pack_stories,
                    max_length=self.story_format.max_length,
                    whole_stories=self.pack_whole_stories,
                ),
                "Packing (train)",
                num_proc=self.num_proc,
            )
        if self.streaming:
            return {"stories": stories, "tokenized": tokenized, "stats": stats}
        return {
            "stories": DatasetDict(stories),
            "tokenized": DatasetDict(tokenized),
            "stats": stats,
        }

    def _may_tokenize_as_loaded(self) -> bool:
        """Whether train could be tokenized as loaded: not when asked ahead, or when packing
        or length groups need its tokens first, or when it streams (tokenized as it is read)."""
        return self.tokenize_train != "ahead" and not (
            self.packing or self.group_by_length or self.streaming
        )

    def _tokenizes_as_loaded(self, train: Split) -> bool:
        """data.tokenize_train, where null is as_loaded for a train split of AS_LOADED_BYTES or
        more."""
        if not self._may_tokenize_as_loaded():
            return False
        return self.tokenize_train == "as_loaded" or train.data.nbytes >= AS_LOADED_BYTES

    def _without_prompts_filling_max_length(
        self, train: Dataset, finish: Callable[[dict], dict] | None
    ) -> Dataset:
        """The train stories tokenize_stories keeps: those whose masked prompt leaves room. Only
        a prompt of many bytes may fill max_length (fewest_bytes_filling); those few stories
        are finished and tokenized here, one at a time."""
        fewest = fewest_bytes_filling(self.tokenizer, self.story_format)
        long_prompts = [
            index
            for index, prompt in enumerate(train["prompt"])
            if len(self.story_format.render_prompt(prompt).encode("utf-8")) >= fewest
        ]
        dropped = [
            index
            for index in long_prompts
            if not tokenize_stories(
                finish(train[index : index + 1]) if finish else train[index : index + 1],
                self.tokenizer,
                self.story_format,
            )["input_ids"]
        ]
        if not dropped:
            return train
        return train.select(np.setdiff1d(np.arange(len(train)), dropped))

    def _report_truncated(self) -> None:
        """Stories cut at max_length end without EOS: say how many, and record the counts (as
        settings, not per-step metrics: a resumed run's setup would log them twice)."""
        cut = {split: count for split, count in self.truncated.items() if count}
        if cut:
            log.warning(
                "Cut %s at data.max_length=%d (they end without EOS); to keep them whole, "
                "raise data.max_length",
                ", ".join(
                    f"{count:,} of {self.examples[split]:,} {split} stories"
                    for split, count in cut.items()
                ),
                self.story_format.max_length,
            )
        if self.trainer is not None:  # recorded with the run's settings (W&B config, CSV hparams)
            counts = {f"data/{split}_truncated": count for split, count in self.truncated.items()}
            for logger in self.trainer.loggers:
                logger.log_hyperparams(counts)

    def _check_dropped(self, split: str, stories: Split, tokenized: Split) -> None:
        """Prompts filling max_length drop their story: say how many; refuse an empty split."""
        if not isinstance(tokenized, Dataset) or len(tokenized) == len(stories):
            return
        dropped = len(stories) - len(tokenized)
        fix = f"raise data.max_length (now {self.story_format.max_length})"
        if len(tokenized) == 0:
            raise StorygenError(
                f"every prompt of the {split} split fills data.max_length, leaving no story "
                f"tokens ({dropped:,} stories); {fix}."
            )
        log.warning(
            "Skipped %d of %d %s stories whose prompt fills data.max_length; to keep them, %s",
            dropped,
            len(stories),
            split,
            fix,
        )

    def _limit(self, split: str, rows: Split) -> Split:
        limit = self.max_samples[split]
        if isinstance(rows, IterableDataset):
            return rows if limit is None else rows.take(limit)
        if limit is not None:
            rows = rows.select(range(min(limit, len(rows))))
        if len(rows) == 0:
            raise StorygenError(
                f"the {split} split has no stories; check the data files or "
                "data.max_train_samples / data.max_eval_samples."
            )
        return rows

    def train_dataloader(self) -> StatefulDataLoader:
        train = self.tokenized["train"]
        if isinstance(train, IterableDataset):
            # the shuffle buffer holds tokenized stories; its order depends only on the seed
            stream = train.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            if self.trainer is not None and self.trainer.world_size > 1:
                # Lightning cannot shard a stream: each rank reads its own shards or rows.
                # Shares differ in length, and a rank whose share ran out first would wait
                # forever on the others' gradients: each share repeats, and max_steps ends.
                stream = split_dataset_by_node(
                    stream, rank=self.trainer.global_rank, world_size=self.trainer.world_size
                ).repeat(None)
            return self._loader(stream, loader=StreamLoader, batch_size=self.batch_size)
        sampler = EpochShuffleSampler(len(train), seed=self.seed)
        if self.group_by_length:
            ids = train.with_format("arrow")[:]["input_ids"]  # lengths without the ids in Python
            lengths = pc.list_value_length(ids).to_numpy().tolist()
            batches = LengthGroupedBatchSampler(sampler, self.batch_size, lengths=lengths)
            return self._loader(train, batch_sampler=batches)
        return self._loader(train, batch_size=self.batch_size, sampler=sampler)

    def val_dataloader(self) -> StatefulDataLoader:
        return self._loader(self.tokenized["validation"], batch_size=self.eval_batch_size)

    def test_dataloader(self) -> StatefulDataLoader:
        return self._loader(self.tokenized["test"], batch_size=self.eval_batch_size)

    def _loader(
        self, rows: Split, loader: type[StatefulDataLoader] = StatefulDataLoader, **kwargs
    ) -> StatefulDataLoader:
        """A DataLoader whose position Lightning saves in checkpoints: a resumed run picks up
        mid-epoch at the next batch it would have seen. Its own generator seeds its workers,
        so starting an epoch draws nothing from the global generator that dropout uses (a
        resumed run restores that generator, but not the draws of loaders started after the
        checkpoint)."""
        return loader(
            rows,
            generator=torch.Generator().manual_seed(self.seed),
            collate_fn=self.collator,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            **kwargs,
        )

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Count the story tokens trained on while the batch is still on the CPU (no device
        sync), for the run's tokens per second."""
        if self.trainer is not None and self.trainer.training:
            self.train_tokens += int(batch["attention_mask"].sum())
        return batch

    def story_prompts(self, split: str, count: int) -> list[StoryPrompt]:
        """The first `count` stories of a split: a fixed prompt set, the same at every step."""
        self.setup()
        rows = self.stories[split].select(range(min(count, len(self.stories[split]))))
        return [
            StoryPrompt(
                prompt=row["prompt"],
                model_input=self.story_format.render_prompt(row["prompt"]),
                reference=row["story"].strip(),
            )
            for row in rows
        ]
