"""Prepared splits are reused by a second run and rebuilt when anything that changes tokens does."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import storygen.data.datamodule as datamodule_module
from storygen.data.datamodule import StoryDataModule
from storygen.data.tinystories import SAMPLE_FILES, TinyStoriesCorpus
from storygen.models.loader import build_offline_gpt2_tokenizer

TOKENIZER = build_offline_gpt2_tokenizer()


@pytest.fixture
def counted_tokenizing(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = datamodule_module.tokenize_stories

    def counting(batch, **kwargs):
        calls.append(len(batch["prompt"]))
        return original(batch, **kwargs)

    monkeypatch.setattr(datamodule_module, "tokenize_stories", counting)
    return calls


@pytest.fixture
def corpus_files(tmp_path: Path) -> tuple[Path, Path]:
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    shutil.copy(SAMPLE_FILES["train"], train)
    shutil.copy(SAMPLE_FILES["validation"], valid)
    return train, valid


def prepare(
    cache_dir: Path, files: tuple[Path, Path], tokenizer=TOKENIZER, prompt_sentences=1, **options
) -> StoryDataModule:
    corpus = TinyStoriesCorpus(
        source="files",
        train_file=str(files[0]),
        validation_file=str(files[1]),
        prompt_sentences=prompt_sentences,
    )
    datamodule = StoryDataModule(corpus, tokenizer, cache_dir=str(cache_dir), **options)
    datamodule.setup()
    return datamodule


def test_a_second_run_reuses_the_prepared_splits(tmp_path, corpus_files, counted_tokenizing):
    first = prepare(tmp_path / "cache", corpus_files)
    assert counted_tokenizing
    counted_tokenizing.clear()
    second = prepare(tmp_path / "cache", corpus_files)
    assert counted_tokenizing == []
    assert second.tokenized["train"]["input_ids"] == first.tokenized["train"]["input_ids"]
    assert second.story_prompts("test", 3) == first.story_prompts("test", 3)


@pytest.mark.parametrize(
    "change",
    ["max_length", "template", "masking", "tokenizer", "cleaning", "source_file"],
)
def test_anything_that_changes_tokens_invalidates_the_cache(
    tmp_path, corpus_files, counted_tokenizing, change
):
    prepare(tmp_path / "cache", corpus_files)
    counted_tokenizing.clear()
    kwargs: dict = {}
    if change == "max_length":
        kwargs["max_length"] = 64
    elif change == "template":
        kwargs["prompt_template"] = "Story: {prompt}"
    elif change == "masking":
        kwargs["train_on_prompt"] = False
    elif change == "tokenizer":
        other = build_offline_gpt2_tokenizer()
        other.add_tokens(["<scene>"])
        kwargs["tokenizer"] = other
    elif change == "cleaning":
        kwargs["prompt_sentences"] = 2
    else:
        with corpus_files[0].open("a") as handle:
            handle.write("A new story begins here. It ends well.\n<|endoftext|>\n")
    rebuilt = prepare(tmp_path / "cache", corpus_files, **kwargs)
    assert counted_tokenizing, f"changing {change} reused a stale cache"
    assert len(list((tmp_path / "cache").iterdir())) == 2
    if change == "source_file":
        assert len(rebuilt.tokenized["train"]) == 361
