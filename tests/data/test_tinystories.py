from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from datasets import Dataset

from storygen.data.sentences import split_opening
from storygen.data.streams import string_dataset
from storygen.data.tinystories import (
    SAMPLE_FILES,
    TinyStoriesCorpus,
    iter_stories_txt,
    read_stories_txt,
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
    rows = ((story,) for story in iter_stories_txt(path))
    assert string_dataset(rows, ["text"], tmp_path / "work", chunk_size=2)["text"][:3] == [
        "Story 0.",
        "Story 1.",
        "",
    ]
    with caplog.at_level(logging.WARNING):
        corpus = TinyStoriesCorpus(source="files", train_file=str(path), validation_file=str(path))
        train = corpus.load()["train"]
    assert len(train) == 7
    assert f"Skipped 3 rows with an empty text in {path}" in caplog.text


# The opening story of TinyStories' validation split, laid out as the V2 .txt files are: lines
# that end in spaces before their line break, a blank line between paragraphs.
V2_STORY = (
    'Spot. Spot saw the shiny car and said, "Wow, Kitty, your car is so bright and clean!" '
    'Kitty smiled and replied, "Thank you, Spot. I polish it every day."  \n'
    "   \n"
    "After playing with the car, Kitty and Spot felt thirsty. They found a small pond with "
    "clear water. They drank the water and felt very happy. They played together all day and "
    "became best friends. \r\n"
)


def test_trailing_spaces_of_v2_lines_are_dropped_and_paragraphs_kept(tmp_path: Path) -> None:
    path = tmp_path / "valid.txt"
    path.write_text(f"{V2_STORY}<|endoftext|>\nOnce upon a time, Roxy climbed. \n<|endoftext|>\n")
    splits = TinyStoriesCorpus(source="files", train_file=str(path), validation_file=str(path))
    train = splits.load()["train"]
    assert train[0] == {
        "prompt": "Spot.",
        "story": ' Spot saw the shiny car and said, "Wow, Kitty, your car is so bright and clean!" '
        'Kitty smiled and replied, "Thank you, Spot. I polish it every day."\n\n'
        "After playing with the car, Kitty and Spot felt thirsty. They found a small pond with "
        "clear water. They drank the water and felt very happy. They played together all day "
        "and became best friends.",
    }
    assert train[1] == {"prompt": "Once upon a time, Roxy climbed.", "story": ""}


def test_parquet_files_load_like_the_txt_files(tmp_path: Path) -> None:
    stories = read_stories_txt(SAMPLE_FILES["validation"])
    parquet = tmp_path / "valid.parquet"
    Dataset.from_dict({"text": stories, "id": list(range(len(stories)))}).to_parquet(parquet)
    from_parquet = TinyStoriesCorpus(
        source="files", train_file=str(parquet), validation_file=str(parquet)
    ).load()
    from_txt = TinyStoriesCorpus(
        source="files",
        train_file=str(SAMPLE_FILES["validation"]),
        validation_file=str(SAMPLE_FILES["validation"]),
    ).load()
    for split in ("train", "validation", "test"):
        assert from_parquet[split].to_dict() == from_txt[split].to_dict()


@pytest.mark.parametrize(
    ("content", "suffix", "reason"),
    [
        (b"PAR1 not really parquet", ".parquet", "Parquet magic bytes not found in footer"),
        (b'{"text": "A story."}\n{"text": "cut off\n', ".jsonl", "JSON parse error"),
    ],
)
def test_a_malformed_parquet_or_json_lines_file_gives_one_clear_error(
    tmp_path, content, suffix, reason
) -> None:
    path = tmp_path / f"train{suffix}"
    path.write_bytes(content)
    corpus = TinyStoriesCorpus(source="files", train_file=str(path), validation_file=str(path))
    with pytest.raises(StorygenError) as error:
        corpus.load()
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{path} could not be read as ")
    assert reason in message and "repair or re-export it" in message
