from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.tokenize.treebank import TreebankWordDetokenizer, TreebankWordTokenizer

from storygen.data.datamodule import StoryDataModule
from storygen.data.writingprompts import (
    ELLIPSIS_AFTER_WORD,
    ELLIPSIS_BEFORE_WORD,
    FILE_SPLITS,
    NEWLINES,
    PTB_TRACE,
    SAMPLE_DIR,
    SPLIT_DASHES,
    WritingPromptsCorpus,
    _attach_single_quotes,
    clean_prompt,
    clean_story,
    read_lines,
    split_tag,
)
from storygen.errors import StorygenError
from storygen.models.loader import build_offline_gpt2_tokenizer


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        (
            "[ WP ] You wake up and it 's `` Monday '' again , forever .",
            'You wake up and it\'s "Monday" again, forever.',
        ),
        ("[ wp ] I do n't know ( yet ) ; do you ?", "I don't know (yet); do you?"),
        ("[ WP/MP ] They 've won !", "They've won!"),
        ("[ Punch ] Short .", "Short."),
        ("No tag here .", "No tag here."),
    ],
)
def test_clean_prompt(raw: str, clean: str) -> None:
    assert clean_prompt(raw) == clean


def test_split_tag_keeps_the_tag() -> None:
    assert split_tag("[ eu ] In Middle-earth .") == ("EU", "In Middle-earth .")
    assert split_tag("[ WP/MP ] x") == ("WP/MP", "x")
    assert split_tag("plain") == ("", "plain")


def test_every_tag_of_a_prompt_is_kept() -> None:
    raw = "[ WP ] [ EU ] The One Ring was never destroyed ; Gollum kept it ."
    assert split_tag(raw) == ("WP,EU", "The One Ring was never destroyed ; Gollum kept it .")
    assert clean_prompt(raw) == "The One Ring was never destroyed; Gollum kept it."


# From a story of the WritingPrompts archive (train.wp_target), as PTB left it
SCENE_BREAK_STORY = (
    "`` We can fly back home . '' <newline> <newline> -- -- - <newline> Hope you liked it OP . "
    "Not exactly what the prompt asked for , but hope it was n't too bad . Would you like a "
    "part 2 ?"
)


def test_a_scene_break_split_by_ptb_is_put_back_together() -> None:
    assert clean_story(SCENE_BREAK_STORY) == (
        '"We can fly back home."\n\n-----\nHope you liked it OP. Not exactly what the prompt '
        "asked for, but hope it wasn't too bad. Would you like a part 2?"
    )
    assert clean_story("The end . <newline> -- - <newline> Edit : thanks !") == (
        "The end.\n---\nEdit: thanks!"
    )
    assert clean_story("I 'm fine . <newline> * * * <newline> Next .") == (
        "I'm fine.\n* * *\nNext."  # typed that way: PTB does not split asterisks
    )


DETOKENIZED = [
    # a spaced ellipsis is as much a sign of PTB text as a split `n't`
    ("I waited ... and waited ... nothing .", "I waited... and waited... nothing."),
    ("It was n't ... fine .", "It wasn't... fine."),
    # PTB-tokenized Grimm (The Iron Stove): single quotes stand apart from what they quote
    (
        "But she was very much troubled , and said , ' dear father , listen to what has "
        "befallen me ! ' and wept .",
        "But she was very much troubled, and said, 'dear father, listen to what has "
        "befallen me!' and wept.",
    ),
    ("He said ' hello ' to me", "He said 'hello' to me"),
    ("' Hi , ' she said . ' What ? '", "'Hi,' she said. 'What?'"),
    ("The dogs ' bowls were n't full .", "The dogs' bowls weren't full."),
]


@pytest.mark.parametrize(("raw", "clean"), DETOKENIZED)
def test_ellipses_and_single_quotes_are_detokenized(raw: str, clean: str) -> None:
    assert clean_story(raw) == clean
    assert clean_story(clean) == clean


def test_clean_story_breaks_lines_and_paragraphs() -> None:
    raw = "<newline> It was n't me . <newline> <newline> `` Stop ! '' I said . <newline> The end ."
    assert clean_story(raw) == 'It wasn\'t me.\n\n"Stop!" I said.\nThe end.'


def test_clean_story_keeps_the_first_words_only() -> None:
    assert clean_story("one two three <newline> four five", max_words=4) == "one two three\nfour"
    assert clean_story(" ".join(["w"] * 1200)).count("w") == 1000


def clean_story_line_by_line(text: str, max_words: int | None = 1000) -> str:
    """clean_story as it was before the lines went through the detokenizer in one call."""
    text = text.replace("\n", " <newline> ")
    if max_words is not None:
        kept, count = [], 0
        for token in text.split():
            if token != "<newline>":
                if count == max_words:
                    break
                count += 1
            kept.append(token)
        text = " ".join(kept)
    lines = NEWLINES.sub(lambda run: "\n\n" if run.group(0).count("<newline>") > 1 else "\n", text)
    return "\n".join(detokenize_alone(line) for line in lines.strip().split("\n")).strip()


def detokenize_alone(line: str) -> str:
    if SPLIT_DASHES.match(line.strip()):
        return "".join(line.split())
    if not PTB_TRACE.search(line):
        return " ".join(line.split())
    prose = TreebankWordDetokenizer().detokenize(_attach_single_quotes(line.split()))
    return ELLIPSIS_AFTER_WORD.sub("...", ELLIPSIS_BEFORE_WORD.sub("... ", prose))


# Lines whose first or last token a detokenizer pattern pairs with the space beside it
EDGE_LINES = (
    *("They were , ...", "... ` dogs `` 's it .", "wan 't 'm '", "So it 's --", "-- and then ."),
    *("'' Bye . ''", "' Hi '", ", he said .", "n't it ?", "'s not !", "'t is .", "It costs $"),
    *("it 's #", "; 1 .", "% off .", "He 's (", ") ok .", "I 'm ``", "! he 's", "... what ? ..."),
    *(": it 's", ". it 's", "] it 's", "it 's [", "it 's {", "} it 's", "it 's <", "> it 's"),
    *("it 's `", "it 's ,", "-- -- -"),
    # one single quote a line: unpaired alone, a pair if quotes were paired across lines
    *("He said ' hi , it 's", "me ' and left .", "the dogs ' bowls ' are here ."),
)
# Tokens that the detokenizer's patterns pair with a space or a character beside them, and the
# separator itself, to begin and end the lines of generated stories
EDGE_TOKENS = (
    *("'", "''", "'''", "`", "``", '"', "x'", "dogs", "n't", "N'T", "'s", "'S", "'m", "'d", "'ll"),
    *("'re", "'ve", "'t", "is", "was", "can", "not", "gon", "na", "wan", "more", "'n", "...", ".."),
    *("....", "--", "-", "-- -- -", ".", ",", ";", ":", "!", "?", "%", "$", "#", "&", "*", "("),
    *(")", "[", "]", "{", "}", "<", ">", "é", "½", "_", "\x00"),
)
STRAY_TOKENS = ("'", "'", "''", "`", "``", "...", "-- -- -", "n't", "'s", ".")
BREAKS = (" <newline> ", " <newline> <newline> ", " <newline> <newline> <newline> ", "\n", " \t ")


def ptb_stories(count: int, seed: int) -> list[str]:
    """Raw stories from the sample's tokens, with lines that begin and end on EDGE_TOKENS, empty
    lines and runs of line breaks."""
    words = " ".join(read_lines(SAMPLE_DIR / "train.wp_target")).split()
    rng = random.Random(seed)
    stories = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 14)):
            line = [rng.choice(words) for _ in range(rng.choice([0, 1, 2, 3, 5, 9, 16]))]
            for _ in range(rng.randint(0, 3)):
                line.insert(rng.randint(0, len(line)), rng.choice(EDGE_TOKENS))
            for _ in range(rng.randint(0, 2)):
                line.insert(rng.randint(0, len(line)), rng.choice(STRAY_TOKENS))
            if rng.random() < 0.5:
                line.insert(0, rng.choice(EDGE_TOKENS))
            if rng.random() < 0.5:
                line.append(rng.choice(EDGE_TOKENS))
            parts += [" ".join(line), rng.choice(BREAKS)]
        stories.append("".join(parts))
    return stories


def test_clean_story_matches_detokenizing_each_line_alone() -> None:
    """Lines go through the detokenizer in one call, joined by a separator; every story must
    come out as it does with one call per line."""
    cases = [raw for raw, _ in DETOKENIZED] + [clean for _, clean in DETOKENIZED]
    cases += [
        SCENE_BREAK_STORY,
        "The end . <newline> -- - <newline> Edit : thanks !",
        "I 'm fine . <newline> * * * <newline> Next .",
        "<newline> It was n't me . <newline> <newline> `` Stop ! '' I said . <newline> The end .",
        " <newline> ".join(EDGE_LINES),
        " <newline> It 's me . <newline> ".join(EDGE_LINES),
    ]
    for split in FILE_SPLITS.values():
        cases += read_lines(SAMPLE_DIR / f"{split}.wp_target")
    for raw in cases:
        assert clean_story(raw) == clean_story_line_by_line(raw)
    for split in FILE_SPLITS.values():
        for raw in read_lines(SAMPLE_DIR / f"{split}.wp_source"):
            assert (
                clean_prompt(raw) == detokenize_alone(NEWLINES.sub(" ", split_tag(raw)[1])).strip()
            )
    for index, raw in enumerate(ptb_stories(400, seed=30)):
        max_words = (1000, None, 40, 0, -1)[index % 5]
        assert clean_story(raw, max_words) == clean_story_line_by_line(raw, max_words), raw


TREEBANK = TreebankWordTokenizer()
WORDS = st.sampled_from(
    ["cat", "The", "don't", "it's", "I'm", "they've", "she'll", "can't", "run", "7", "$5"]
)
SENTENCE = st.builds(
    lambda words, end, quoted: f'"{" ".join(words)}{end}"' if quoted else " ".join(words) + end,
    st.lists(WORDS, min_size=1, max_size=8),
    st.sampled_from(["", ",", ".", "!", "?", ";", ":", "..."]),
    st.booleans(),
)
# Raw WritingPrompts text: PTB-tokenized prose, paragraphs joined by runs of <newline>.
PTB_PARAGRAPH = st.lists(SENTENCE, min_size=1, max_size=4).map(
    lambda sentences: " ".join(TREEBANK.tokenize(" ".join(sentences)))
)
RAW_STORY = st.lists(
    st.tuples(PTB_PARAGRAPH, st.sampled_from([" <newline> ", " <newline> <newline> "])),
    min_size=1,
    max_size=4,
).map(lambda parts: "".join(text + sep for text, sep in parts))
TAGS = st.sampled_from(["[ WP ] ", "[ wp ] ", "[ EU ] ", "[ Punch ] ", "[ WP/MP ] ", "[ cw ]"])


@settings(max_examples=300, deadline=None)
@given(TAGS, PTB_PARAGRAPH, RAW_STORY)
def test_cleaning_leaves_no_newline_token_nor_tag_and_is_idempotent(tag, prompt, story):
    cleaned_prompt = clean_prompt(tag + prompt)
    assert split_tag(cleaned_prompt)[0] == "" and "<newline>" not in cleaned_prompt
    assert clean_prompt(cleaned_prompt) == cleaned_prompt
    cleaned_story = clean_story(story)
    assert "<newline>" not in cleaned_story
    assert clean_story(cleaned_story) == cleaned_story


def write_split(directory: Path, name: str, prompts: list[str], stories: list[str]) -> None:
    (directory / f"{name}.wp_source").write_text("\n".join(prompts) + "\n")
    (directory / f"{name}.wp_target").write_text("\n".join(stories) + "\n")


@pytest.fixture
def raw_dir(tmp_path: Path) -> Path:
    for name in ("train", "valid", "test"):
        write_split(
            tmp_path,
            name,
            [f"[ WP ] Prompt {i} for {name} ." for i in range(4)],
            [f"Story {i} is n't long . <newline> <newline> The end ." for i in range(4)],
        )
    return tmp_path


def test_raw_files_load_aligned_and_cleaned(raw_dir: Path) -> None:
    splits = WritingPromptsCorpus(source="files", data_dir=str(raw_dir)).load()
    assert {name: len(split) for name, split in splits.items()} == {
        "train": 4,
        "validation": 4,
        "test": 4,
    }
    assert splits["validation"][2] == {
        "prompt": "Prompt 2 for valid.",
        "story": "Story 2 isn't long.\n\nThe end.",
        "tag": "WP",
    }


def test_only_newlines_end_a_line_of_the_raw_files(raw_dir: Path) -> None:
    """Reddit text holds form feeds, \u2028 and stray \r; the archive ends lines with \n
    (some copies with \r\n)."""
    write_split(raw_dir, "train", ["[ WP ] A\x0cB", "[ WP ] C\r"], ["One\u2028two .", "Three\r"])
    train = WritingPromptsCorpus(source="files", data_dir=str(raw_dir)).load()["train"]
    assert len(train) == 2 and train[1]["prompt"] == "C" and train[1]["story"] == "Three"
    assert "two" in train[0]["story"]


def test_line_count_mismatch_is_refused(raw_dir: Path) -> None:
    (raw_dir / "test.wp_target").write_text("only one story\n")
    with pytest.raises(
        StorygenError, match=r"test.wp_source has 4 lines but .*test.wp_target has 1"
    ):
        WritingPromptsCorpus(source="files", data_dir=str(raw_dir)).load()


def test_missing_split_file_is_named(raw_dir: Path) -> None:
    (raw_dir / "valid.wp_source").unlink()
    with pytest.raises(StorygenError, match=r"split file .*valid.wp_source does not exist"):
        WritingPromptsCorpus(source="files", data_dir=str(raw_dir)).load()


def test_non_utf8_bytes_are_named(raw_dir: Path) -> None:
    (raw_dir / "train.wp_target").write_bytes(b"caf\xe9\n" * 4)
    with pytest.raises(StorygenError, match=r"train.wp_target is not UTF-8"):
        WritingPromptsCorpus(source="files", data_dir=str(raw_dir)).load()


def test_blank_pairs_are_skipped_and_counted(raw_dir: Path, caplog) -> None:
    write_split(raw_dir, "train", ["[ WP ] a .", "  ", "[ WP ] c ."], ["x .", "y .", "   "])
    with caplog.at_level(logging.WARNING):
        splits = WritingPromptsCorpus(source="files", data_dir=str(raw_dir)).load()
    assert splits["train"]["prompt"] == ["a."]
    assert "Skipped 2 blank prompt/story pairs" in caplog.text and "train.wp_source" in caplog.text


def test_missing_data_dir_is_named(tmp_path: Path) -> None:
    with pytest.raises(StorygenError, match="is not a directory"):
        WritingPromptsCorpus(source="files", data_dir=str(tmp_path / "nope"))


def test_labels_mask_exactly_the_prompt_and_keep_eos(raw_dir: Path) -> None:
    tokenizer = build_offline_gpt2_tokenizer()
    template = "Prompt: {prompt}\nStory:\n"
    datamodule = StoryDataModule(
        WritingPromptsCorpus(source="files", data_dir=str(raw_dir)),
        tokenizer,
        prompt_template=template,
        train_on_prompt=False,
        max_length=128,
    )
    datamodule.setup()
    example = datamodule.tokenized["train"][0]
    prompt_ids = tokenizer(template.format(prompt="Prompt 0 for train."))["input_ids"]
    story_ids = tokenizer("Story 0 isn't long.\n\nThe end.")["input_ids"]
    assert example["input_ids"] == prompt_ids + story_ids + [tokenizer.eos_token_id]
    assert example["labels"] == [-100] * len(prompt_ids) + story_ids + [tokenizer.eos_token_id]


def test_clean_false_keeps_the_raw_text_and_still_reads_the_tag(raw_dir: Path) -> None:
    write_split(
        raw_dir,
        "train",
        ["[ WP ] [ EU ] A ring ."],
        ["It was n't mine . <newline> <newline> -- -- - <newline> The end ."],
    )
    corpus = WritingPromptsCorpus(source="files", data_dir=str(raw_dir), clean=False)
    assert corpus.load()["train"][0] == {
        "prompt": "[ WP ] [ EU ] A ring .",
        "story": "It was n't mine . <newline> <newline> -- -- - <newline> The end .",
        "tag": "WP,EU",
    }


def test_bundled_sample_is_raw_writingprompts_that_cleans_to_prose() -> None:
    raw_prompts = (SAMPLE_DIR / "train.wp_source").read_text().splitlines()
    raw_stories = (SAMPLE_DIR / "train.wp_target").read_text().splitlines()
    assert all(split_tag(p)[0] for p in raw_prompts)
    assert all("<newline>" in s for s in raw_stories) and any(" n't " in s for s in raw_stories)
    splits = WritingPromptsCorpus(source="sample").load()
    assert sum(len(split) for split in splits.values()) >= 150
    assert all("<newline>" not in s and " n't" not in s for s in splits["train"]["story"])
