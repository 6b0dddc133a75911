"""Streaming (`data.streaming=true`): train on a corpus as it downloads, tokenizing on the fly.

Only the train split streams. Validation and test are small (tens of thousands of stories)
and are read whole, so a streamed run is scored on exactly the stories a non-streamed run is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from datasets import Dataset, IterableDataset, load_dataset
from torchdata.stateful_dataloader import StatefulDataLoader

log = logging.getLogger(__name__)

Split = Dataset | IterableDataset


def load_hub_splits(
    hub_id: str, split_names: dict[str, str], streaming: bool, revision: str | None = None
) -> dict[str, Split]:
    """Splits of a hub dataset (ours -> the hub's names) at `revision` (a commit, tag or
    branch; None: main), with train streamed if asked."""
    if not streaming:
        hub = load_dataset(hub_id, revision=revision)
        return {split: hub[name] for split, name in split_names.items()}
    splits: dict[str, Split] = {}
    for split, name in split_names.items():
        stream = load_dataset(hub_id, split=name, streaming=True, revision=revision)
        splits[split] = stream if split == "train" else Dataset.from_list(list(stream))
    return splits


def stream_train(splits: dict[str, Split], streaming: bool) -> dict[str, Split]:
    """Local files load in seconds; streaming them means tokenizing train as it is read."""
    if streaming and isinstance(splits["train"], Dataset):
        splits = splits | {"train": splits["train"].to_iterable_dataset()}
    return splits


def map_split(
    split: Split, function: Callable, desc: str, num_proc: int | None = None, **options
) -> Split:
    """Batched `map` on a Dataset (in `num_proc` processes, with a progress bar), or lazily,
    batch by batch as it is read, on a stream."""
    if isinstance(split, IterableDataset):
        return split.map(function, batched=True, **options)
    return split.map(function, batched=True, desc=desc, num_proc=num_proc, **options)


def without_blanks(split: Split, columns: list[str], where: str) -> Split:
    """Drop rows with an empty, whitespace-only or missing value in any of `columns` (a blank
    story would train on EOS alone), counting them in a warning that names `where`; a
    stream is filtered as it is read, uncounted."""

    def has_text(*batch_columns: list) -> list[bool]:
        return [all(isinstance(v, str) and v.strip() for v in row) for row in zip(*batch_columns)]

    kept = split.filter(has_text, input_columns=columns, batched=True)
    if isinstance(split, Dataset) and len(kept) < len(split):
        log.warning(
            "Skipped %d rows with an empty %s in %s",
            len(split) - len(kept),
            " or ".join(columns),
            where,
        )
    return kept


class StreamLoader(StatefulDataLoader):
    """The loader of a streamed train split, whose saved position is the last batch trained.

    Lightning reads a loader without a length one batch ahead of training, to see where it
    ends; a plain loader's position would then include that batch, and a resumed run would
    skip it. This one reports its position from before its latest read (at the end of the
    stream, the end).
    """

    def __iter__(self):
        self._trained_position = None
        return self._lagging(super().__iter__())

    def _lagging(self, batches):
        while True:
            before = super().state_dict()
            try:
                batch = next(batches)
            except StopIteration:
                self._trained_position = None
                return
            self._trained_position = before
            yield batch

    def state_dict(self) -> dict:
        position = getattr(self, "_trained_position", None)
        return position if position is not None else super().state_dict()
