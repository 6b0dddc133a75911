"""TinyStories (Eldan & Li, 2023): the hub dataset, local files, or the bundled sample.

Every source becomes a DatasetDict with splits train/validation/test and columns
`prompt` (the story's opening sentence(s)) and `story` (the rest). The hub dataset has
no test split, so one is carved from validation, deterministically.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from datasets import Dataset, load_dataset

from storygen.data.cache import resolve_hub_revision
from storygen.data.sentences import split_opening
from storygen.data.streams import (
    Split,
    load_hub_splits,
    map_split,
    stream_train,
    string_dataset,
    utf8_lines,
    without_blanks,
)
from storygen.errors import StorygenError

log = logging.getLogger(__name__)
SEPARATOR = "<|endoftext|>"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "tinystories"
SAMPLE_FILES = {
    "train": SAMPLE_DIR / "TinyStoriesV2-sample-train.txt",
    "validation": SAMPLE_DIR / "TinyStoriesV2-sample-valid.txt",
}
FILE_FORMATS = (".txt", ".jsonl", ".json", ".parquet")
SOURCES = ("hub", "files", "sample")


def read_stories_txt(path: Path) -> list[str]:
    """The non-blank stories of a TinyStoriesV2 `.txt` file."""
    return [story for story in iter_stories_txt(path) if story]


def iter_stories_txt(path: Path) -> Iterator[str]:
    """Stories of a TinyStoriesV2 `.txt` file (text between lines holding `<|endoftext|>`),
    blank ones included so they can be counted, read line by line: the V2 train file is
    2.2 GB. Lines end at `\n` alone; byte offsets in errors count from the file's start."""
    current: list[str] = []
    separators = 0
    for line in utf8_lines(path):
        if line.strip() == SEPARATOR:
            separators += 1
            yield "\n".join(current).strip()
            current = []
        else:
            current.append(line.rstrip("\r\n"))
    if not separators:
        raise StorygenError(
            f"{path} has no `{SEPARATOR}` separator lines; TinyStories .txt files separate "
            f"stories with lines holding `{SEPARATOR}` "
            "(or use .jsonl/.parquet with a `text` column)."
        )
    if last := "\n".join(current).strip():  # text after the final separator
        yield last


def tidy(text: str) -> str:
    """A story without the spaces its lines end with (TinyStoriesV2 lines keep them, and they
    would tokenize into stray space tokens); its line and paragraph breaks stay as they are."""
    return "\n".join(line.rstrip() for line in text.strip().split("\n"))


def check_text_file(path: Path) -> None:
    """Fail at config time, naming the file, when it is missing or in a format we do not read."""
    if not path.is_file():
        raise StorygenError(f"data file {path} does not exist; check data.corpus paths.")
    if path.suffix.lower() not in FILE_FORMATS:
        raise StorygenError(
            f"{path} has an unsupported format {path.suffix.lower()!r}; "
            f"use one of {', '.join(FILE_FORMATS)}."
        )


def load_text_file(path: Path, work_dir: Path | None = None) -> Dataset:
    """One local file in any format TinyStories is shipped in, as a Dataset with `text`,
    written as Arrow under `work_dir` (memory-mapped) where one is given."""
    check_text_file(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return string_dataset(((story,) for story in iter_stories_txt(path)), ["text"], work_dir)
    builder = "parquet" if suffix == ".parquet" else "json"
    cache_dir = None if work_dir is None else str(work_dir)
    try:
        dataset = load_dataset(builder, data_files=str(path), split="train", cache_dir=cache_dir)
    except Exception as exc:  # datasets raises several types for a malformed file
        raise StorygenError(
            f"{path} could not be read as {builder}: {_reason(exc)}; repair or re-export it "
            "(TinyStories files are .txt, .jsonl with a `text` field on each line, or .parquet "
            "with a `text` column)."
        ) from None
    if "text" not in dataset.column_names:
        raise StorygenError(
            f"{path} has columns {dataset.column_names}; TinyStories files need a `text` column."
        )
    return dataset.select_columns(["text"])


def _reason(exc: BaseException) -> str:
    """The first message under datasets' generic `DatasetGenerationError`, on one line."""
    while type(exc).__name__ == "DatasetGenerationError" and (exc.__cause__ or exc.__context__):
        exc = exc.__cause__ or exc.__context__
    return " ".join(str(exc).split()).rstrip(".")


@dataclass(frozen=True)
class TinyStoriesCorpus:
    """Where TinyStories comes from and how each story is split into prompt and rest."""

    source: str = "hub"
    """hub | files | sample"""
    hub_id: str = "roneneldan/TinyStories"
    revision: str | None = None
    """with source=hub: the dataset's commit, tag or branch (None: main); pins the data"""
    train_file: str | None = None
    validation_file: str | None = None
    test_size: float = 0.5
    """share of the validation stories set aside as the test split"""
    prompt_sentences: int = 1
    """sentences of each story that form its prompt"""
    seed: int = 3407
    finish_train: ClassVar[None] = None
    """load leaves no train work to the loader"""

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise StorygenError(
                f"data.corpus.source={self.source!r} is not known; use one of {', '.join(SOURCES)}."
            )
        if self.source == "files" and not (self.train_file and self.validation_file):
            raise StorygenError(
                "data.corpus.source=files needs data.corpus.train_file and "
                "data.corpus.validation_file (.txt, .jsonl or .parquet)."
            )
        if self.source == "files":
            check_text_file(Path(self.train_file))
            check_text_file(Path(self.validation_file))
        if not 0 < self.test_size < 1:
            raise StorygenError(f"data.corpus.test_size={self.test_size} must be in (0, 1).")
        if self.prompt_sentences < 1:
            raise StorygenError(
                f"data.corpus.prompt_sentences={self.prompt_sentences} must be at least 1."
            )

    def hub_revision(self) -> str | None:
        if self.source != "hub":
            return None
        return resolve_hub_revision(self.hub_id, self.revision)

    def source_files(self) -> list[Path]:
        if self.source == "hub":
            return []
        if self.source == "sample":
            return list(SAMPLE_FILES.values())
        return [Path(self.train_file), Path(self.validation_file)]

    def load(
        self,
        streaming: bool = False,
        num_proc: int | None = None,
        work_dir: Path | None = None,
        train_openings: bool = True,
        finish_train_later: bool = False,
    ) -> dict[str, Split]:
        """finish_train_later is moot: nothing is left to finish (finish_train is None)."""
        raw = stream_train(self._load_text(streaming, work_dir), streaming)
        held_out = raw["validation"].train_test_split(test_size=self.test_size, seed=self.seed)
        splits = {"train": raw["train"], "validation": held_out["train"], "test": held_out["test"]}
        # validation and test prompt generation; train's opening matters only to some formats
        openings = {"train": train_openings, "validation": True, "test": True}
        return {
            split: map_split(
                stories,
                self._split_prompt if openings[split] else self._whole_story,
                f"{'Splitting openings' if openings[split] else 'Tidying'} ({split})",
                num_proc=num_proc,
                remove_columns=["text"],
            )
            for split, stories in splits.items()
        }

    def _load_text(self, streaming: bool, work_dir: Path | None) -> dict[str, Split]:
        if self.source == "hub":
            names = {"train": "train", "validation": "validation"}
            splits = load_hub_splits(self.hub_id, names, streaming, self.revision)
            return {
                split: without_blanks(
                    stories.select_columns(["text"]), ["text"], f"{self.hub_id} {split}"
                )
                for split, stories in splits.items()
            }
        files = (
            SAMPLE_FILES
            if self.source == "sample"
            else {"train": Path(self.train_file), "validation": Path(self.validation_file)}
        )
        return {
            split: without_blanks(load_text_file(Path(path), work_dir), ["text"], str(path))
            for split, path in files.items()
        }

    @staticmethod
    def _whole_story(batch: dict[str, list]) -> dict[str, list[str]]:
        """The story whole, its prompt empty: what _split_prompt's two halves join into."""
        return {
            "prompt": [""] * len(batch["text"]),
            "story": [tidy(text) for text in batch["text"]],
        }

    def _split_prompt(self, batch: dict[str, list]) -> dict[str, list[str]]:
        pairs = [split_opening(tidy(text), self.prompt_sentences) for text in batch["text"]]
        return {"prompt": [p for p, _ in pairs], "story": [s for _, s in pairs]}
