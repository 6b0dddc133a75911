"""Streaming (`data.streaming=true`): train on a corpus as it downloads, tokenizing on the fly.

Only the train split streams. Validation and test are small (tens of thousands of stories)
and are read whole, so a streamed run is scored on exactly the stories a non-streamed run is.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path

import pyarrow as pa
from datasets import (
    Dataset,
    Features,
    IterableDataset,
    Value,
    concatenate_datasets,
    load_dataset,
)
from torchdata.stateful_dataloader import StatefulDataLoader

from storygen.errors import StorygenError

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


def utf8_lines(path: Path) -> Iterator[str]:
    """A local file's lines, split at "\n" alone (text mode would also split at \r, \x85,
    \u2028, ... inside a story) and read one at a time (train files are gigabytes); the line
    ending is kept. A byte that is not UTF-8 is named by its offset in the file."""
    offset = 0
    with path.open("rb") as handle:
        for raw in handle:
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise StorygenError(
                    f"{path} is not UTF-8 text (byte {offset + exc.start}); re-encode it as UTF-8."
                ) from None
            offset += len(raw)
            yield line


def string_dataset(
    rows: Iterable[tuple[str, ...]],
    names: list[str],
    work_dir: Path | None,
    chunk_size: int = 10_000,
) -> Dataset:
    """A Dataset of string columns `names`, built a chunk of rows at a time: the Python
    strings of a multi-GB file never all sit in memory at once. With a `work_dir` the rows are
    written there as an Arrow file and memory-mapped, and every map or filter on the result
    writes its own Arrow file beside it (datasets' default next to a file), so preparing a
    full corpus holds none of it in RAM; without one they stay in memory."""
    rows = iter(rows)
    features = Features({name: Value("string") for name in names})
    chunks = (
        dict(zip(names, map(list, zip(*chunk))))
        for chunk in iter(lambda: list(islice(rows, chunk_size)), [])
    )
    if work_dir is None:
        parts = [Dataset.from_dict(chunk, features=features) for chunk in chunks]
        return (
            concatenate_datasets(parts)
            if parts
            else Dataset.from_dict({n: [] for n in names}, features=features)
        )
    work_dir.mkdir(parents=True, exist_ok=True)
    path = work_dir / f"read-{uuid.uuid4().hex}.arrow"
    schema = features.arrow_schema
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for chunk in chunks:
            writer.write_batch(pa.record_batch([chunk[name] for name in names], schema=schema))
    return Dataset.from_file(str(path))


# Below this many bytes of Arrow data a split is mapped in this process when data.num_proc is
# null. Starting the workers costs ~0.2 s per map (fork and a manager process, measured with a
# one-line function on the 2-core machine; more from a process holding a model), while a second
# process saves at most ~0.15 ms per TinyStories story of ~1 KB (half of splitting and
# tokenizing's ~0.35 ms, idle) and more per byte of WritingPrompts (cleaning costs ~8x its raw
# encode). Counted in bytes, not rows, since WritingPrompts' stories are 4x TinyStories'. 4 MB
# (~4,000 TinyStories stories, ~2 s of work) keeps a margin; the bundled samples (~200 KB),
# the tests and the quickstart stay in one process.
PARALLEL_BYTES = 4_000_000
MAX_PROCESSES = 8  # past this, reading and writing the Arrow files limits more than the CPUs


def usable_cores() -> int:
    """The cores this process may run on (a SLURM job's or container's share, not the host's)."""
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def processes(num_proc: int | None, size: int) -> int | None:
    """`datasets.map`'s num_proc for a split of `size` bytes: data.num_proc as set, or where it
    is null the cores this process may use (at most MAX_PROCESSES) for a large split. 1 becomes
    None: datasets starts a pool of one worker for num_proc=1, and only None maps in this
    process (with the fast tokenizer's own threads)."""
    if num_proc is None:
        num_proc = min(usable_cores(), MAX_PROCESSES) if size >= PARALLEL_BYTES else 1
    return num_proc if num_proc > 1 else None


def map_split(
    split: Split, function: Callable, desc: str, num_proc: int | None = None, **options
) -> Split:
    """Batched `map` on a Dataset (in processes(num_proc) processes, with one progress bar named
    `desc`), or lazily, batch by batch as it is read, on a stream."""
    if isinstance(split, IterableDataset):
        return split.map(function, batched=True, **options)
    return split.map(
        function,
        batched=True,
        desc=desc,
        num_proc=processes(num_proc, split.data.nbytes),
        **options,
    )


def without_blanks(split: Split, columns: list[str], where: str) -> Split:
    """Drop rows with an empty, whitespace-only or missing value in any of `columns` (a blank
    story would train on EOS alone), counting them in a warning that names `where`; a
    stream is filtered as it is read, uncounted."""

    def has_text(*batch_columns: list) -> list[bool]:
        return [all(isinstance(v, str) and v.strip() for v in row) for row in zip(*batch_columns)]

    if isinstance(split, IterableDataset):
        kept = split.filter(has_text, input_columns=columns, batched=True)
    else:
        kept = split.filter(has_text, input_columns=columns, batched=True, desc="Dropping blanks")
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
