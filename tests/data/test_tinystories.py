from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from storygen.data.sentences import split_opening
from storygen.data.tinystories import (
    SAMPLE_FILES,
    TinyStoriesCorpus,
    iter_stories_txt,
    read_stories_txt,
    stories_dataset,
)
from storygen.errors import StorygenError


def test_txt_stories_are_split_on_endoftext_lines(tmp_path: Path) -> None:
    path = tmp_path / "stories.txt"
    path.write_text(
        "Tom ran.\nHe fell.\n<|endoftext|>\n\nAnn sat.\n<|endoftext|>\n  \n<|endoftext|>\n"
    )
    assert read_stories_txt(path) == ["Tom ran.\nHe fell.", "Ann sat."]


def test_bundled_sample_has_hundreds_of_stories() -> None:
    assert len(read_stories_txt(SAMPLE_FILES["train"])) >= 300
    assert len(read_stories_txt(SAMPLE_FILES["validation"])) >= 30


def test_opening_sentence_becomes_the_prompt_and_the_rest_the_reference() -> None:
    text = 'Once upon a time, Mr. Fox lived in a den. He was "very" hungry! One day he ate.'
    assert split_opening(text) == (
        "Once upon a time, Mr. Fox lived in a den.",
        ' He was "very" hungry! One day he ate.',
    )
    prompt, rest = split_opening(text, sentences=2)
    assert prompt + rest == text and rest == " One day he ate."
    assert split_opening("Just one sentence.") == ("Just one sentence.", "")


def test_sample_corpus_loads_three_splits_of_prompt_and_story() -> None:
    splits = TinyStoriesCorpus(source="sample", test_size=0.5, seed=1).load()
    assert set(splits) == {"train", "validation", "test"}
    assert splits["train"].column_names == ["prompt", "story"]
    assert len(splits["validation"]) + len(splits["test"]) == 60
    again = TinyStoriesCorpus(source="sample", test_size=0.5, seed=1).load()
    assert splits["test"]["prompt"] == again["test"]["prompt"]  # the carved test split is fixed


def test_jsonl_files_with_a_text_column_load(tmp_path: Path) -> None:
    path = tmp_path / "stories.jsonl"
    stories = [{"text": f"Story {i} begins. It ends well."} for i in range(6)]
    path.write_text("\n".join(json.dumps(s) for s in stories))
    splits = TinyStoriesCorpus(
        source="files", train_file=str(path), validation_file=str(path)
    ).load()
    assert splits["train"][0] == {"prompt": "Story 0 begins.", "story": " It ends well."}


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (b"no separators at all", ".txt", "has no `<|endoftext|>` separator lines"),
        (b"A story.\n<|endoftext|>\ncaf\xe9\n", ".txt", r"is not UTF-8 text \(byte 26\)"),
        (b'{"story": "x"}\n', ".jsonl", "need a `text` column"),
    ],
)
def test_bad_files_are_named_with_the_fix(tmp_path, content, suffix, message) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(StorygenError, match=message.replace("|", r"\|")):
        TinyStoriesCorpus(source="files", train_file=str(path), validation_file=str(path)).load()


def test_a_large_txt_file_is_read_in_chunks_with_its_blank_stories_counted(tmp_path, caplog):
    path = tmp_path / "train.txt"
    blank = "  \n<|endoftext|>\n"  # after every odd story
    path.write_text("".join(f"Story {i}.\n<|endoftext|>\n" + blank * (i % 2) for i in range(7)))
    assert stories_dataset(iter_stories_txt(path), chunk_size=2)["text"][:3] == [
        "Story 0.",
        "Story 1.",
        "",
    ]
    with caplog.at_level(logging.WARNING):
        corpus = TinyStoriesCorpus(source="files", train_file=str(path), validation_file=str(path))
        train = corpus.load()["train"]
    assert len(train) == 7
    assert f"Skipped 3 rows with an empty text in {path}" in caplog.text
