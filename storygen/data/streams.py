"""Streaming (`data.streaming=true`): train on a corpus as it downloads, tokenizing on the fly.

Only the train split streams. Validation and test are small (tens of thousands of stories)
and are read whole, so a streamed run is scored on exactly the stories a non-streamed run is.
"""

from __future__ import annotations

from collections.abc import Callable

from datasets import Dataset, IterableDataset, load_dataset

Split = Dataset | IterableDataset


def load_hub_splits(hub_id: str, split_names: dict[str, str], streaming: bool) -> dict[str, Split]:
    """Splits of a hub dataset (ours -> the hub's names), with train streamed if asked."""
    if not streaming:
        hub = load_dataset(hub_id)
        return {split: hub[name] for split, name in split_names.items()}
    splits: dict[str, Split] = {}
    for split, name in split_names.items():
        stream = load_dataset(hub_id, split=name, streaming=True)
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
