"""An on-disk cache of prepared (cleaned and tokenized) splits, keyed by everything that
changes the tokens: the corpus settings and its source files, the tokenizer, the format.

A second run with the same inputs loads the arrow files instead of reading, cleaning and
tokenizing again; any change to an input gives a new key, so a stale cache is never read.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from datasets import DatasetDict, load_from_disk
from datasets.fingerprint import Hasher

log = logging.getLogger(__name__)


def file_signature(path: Path) -> tuple[str, int, int]:
    """A source file as the cache sees it: where it is, its size and when it last changed."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def cache_key(corpus: object, source_files: list[Path], *parts: object) -> str:
    corpus_fields = dataclasses.asdict(corpus) if dataclasses.is_dataclass(corpus) else corpus
    return Hasher.hash(
        [
            type(corpus).__qualname__,
            corpus_fields,
            [file_signature(p) for p in source_files],
            *parts,
        ]
    )


def load_or_prepare(
    cache_dir: Path | None, key: str, prepare: Callable[[], dict[str, DatasetDict]]
) -> dict[str, DatasetDict]:
    """Load the named DatasetDicts saved under `cache_dir/key`, or prepare and save them.

    Saving goes to a temporary folder renamed into place, so an interrupted run never leaves
    a half-written cache behind.
    """
    if cache_dir is None:
        return prepare()
    target = cache_dir / key
    if target.is_dir():
        log.info("Loading prepared data from %s", target)
        return {name.name: load_from_disk(str(name)) for name in sorted(target.iterdir())}
    prepared = prepare()
    staging = cache_dir / f".{key}.{uuid.uuid4().hex}.tmp"
    for name, datasets in prepared.items():
        datasets.save_to_disk(str(staging / name))
    try:
        staging.rename(target)
    except OSError:  # another run finished first; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    log.info("Saved prepared data to %s", target)
    return {name: load_from_disk(str(target / name)) for name in prepared}
