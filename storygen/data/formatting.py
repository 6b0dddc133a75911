"""Turn (prompt, story) pairs into token ids and labels, the same way for every dataset."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from tokenizers import Encoding
from transformers import PreTrainedTokenizerBase

from storygen.errors import StorygenError

log = logging.getLogger(__name__)
IGNORE_INDEX = -100
# token ids only: no attention masks or special tokens the collator would throw away
NO_EXTRAS = {"add_special_tokens": False, "return_attention_mask": False}
# The layout of a tokenized example, part of the cache key: bump it when tokenize_stories
# changes the tokens it writes, so no run reads examples laid out the old way.
LAYOUT_VERSION = 3


def bos_prefix(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """`[BOS]` where the tokenizer starts every text with it (Llama, Mistral: the models were
    pretrained that way, so training and generation keep it), else `[]` (GPT-2 adds none)."""
    bos = tokenizer.bos_token_id
    return [bos] if bos is not None and tokenizer("a")["input_ids"][:1] == [bos] else []


@dataclass(frozen=True)
class StoryFormat:
    """How an example is laid out: template(prompt) + story + EOS."""

    template: str = "{prompt}"
    """text before the story, with `{prompt}` where the prompt goes"""
    train_on_prompt: bool = True
    """False masks the prompt's tokens to -100 so only the story is learned"""
    max_length: int = 512
    """tokens per example, BOS and EOS included; a longer story is cut and ends without EOS"""

    def __post_init__(self) -> None:
        if "{prompt}" not in self.template:
            raise StorygenError(
                f"data.prompt_template={self.template!r} has no `{{prompt}}` placeholder; "
                "add one, e.g. 'Prompt: {prompt}\\nStory:\\n'."
            )
        length = self.max_length
        if isinstance(length, bool) or not isinstance(length, int) or length < 2:
            raise StorygenError(
                f"data.max_length={length!r} must be at least 2 tokens, a whole number (e.g. 512)."
            )
        if self.template.endswith((" ", "\t")):
            log.warning(
                "data.prompt_template=%r ends in a space, which the story's first word takes "
                "into its token in training (` It`), while generation sees the prompt alone, "
                "space and all; end the template with a newline or a word instead.",
                self.template,
            )

    def render_prompt(self, prompt: str) -> str:
        return self.template.format(prompt=prompt)

    @property
    def opening_shapes_tokens(self) -> bool:
        """Whether a training row's tokens depend on where its prompt ends. Not with the bare
        `{prompt}` template and a learned prompt: prompt + story is the story as written, so
        a train split need not be split into openings (Punkt) at all."""
        return not (self.template == "{prompt}" and self.train_on_prompt)


def prompt_tokens(encoding: Encoding, prompt_end: int) -> int:
    """How many tokens lie wholly inside the first `prompt_end` characters (their offsets end
    at or before it), found from the token holding the story's first character. Asking the
    tokenizer for every token's offsets instead built a Python tuple per token: a masked
    encode ran at ~0.7 of a plain one."""
    first = encoding.char_to_token(prompt_end)
    if first is None:  # no story text, or its first character is in no token: count them all
        return sum(1 for _, end in encoding.offsets if end <= prompt_end)
    return first  # the first token holding it, also where byte-level tokens split a character


def encode_ids(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Token ids only, from the Rust tokenizer's `encode_batch_fast` (tokenizers 0.20+), which
    skips the character offsets a plain call tracks for every token: ~1.4x the batched
    `tokenizer(texts)`, with the same ids (tests/data/test_formatting.py). A prompt that is
    not learned is masked by those offsets, so it keeps the plain call."""
    encodings = tokenizer.backend_tokenizer.encode_batch_fast(texts, add_special_tokens=False)
    return [encoding.ids for encoding in encodings]


def tokenize_for_training(
    batch: dict[str, list[str]],
    tokenizer: PreTrainedTokenizerBase,
    story_format: StoryFormat,
    finish: Callable[[dict], dict] | None = None,
) -> dict[str, list]:
    """A train batch tokenized as the loader reads it (data.tokenize_train=as_loaded): the rows
    tokenize_stories writes ahead, without its `truncated` count, after the corpus's `finish`
    (its cleaning, where it left that to the loader). The stories whose masked prompt would
    fill max_length were dropped before: one row per story."""
    rows = tokenize_stories(finish(batch) if finish else batch, tokenizer, story_format)
    if len(rows["input_ids"]) != len(batch["story"]):
        raise RuntimeError("a story reached the loader whose prompt fills data.max_length")
    return {"input_ids": rows["input_ids"], "labels": rows["labels"]}


def fewest_bytes_filling(tokenizer: PreTrainedTokenizerBase, story_format: StoryFormat) -> int:
    """The fewest UTF-8 bytes of a rendered prompt that may leave its story no room (its
    tokens reaching room - 1: tokenize_stories drops it). Every token of a prompt holds at
    least one of its bytes (byte-level BPE, SentencePiece's byte fallback) but SentencePiece's
    leading `▁`, so a prompt of b bytes has at most b + 1 tokens."""
    room = story_format.max_length - len(bos_prefix(tokenizer))
    return room - 2


def tokenize_stories(
    batch: dict[str, list[str]], tokenizer: PreTrainedTokenizerBase, story_format: StoryFormat
) -> dict[str, list]:
    """Batched `datasets.map` function: input_ids, labels and `truncated` per (prompt, story).

    Prompt and story are tokenized as one text, as the model reads them: tokenized apart,
    SentencePiece (Mistral) would open every story with a `▁` space that the joint text does
    not have. A masked prompt is masked by character offsets: tokens wholly inside the prompt
    get -100, every token holding story text is learned. A story that fits ends with EOS and
    keeps EOS's label, so the model learns where stories stop; a story cut at max_length ends
    without one (`truncated`), so the model never learns to stop mid-sentence. A masked prompt
    that leaves no room for a story token drops the example (counted by the caller).
    """
    if not story_format.train_on_prompt and not tokenizer.is_fast:
        raise StorygenError(
            f"data.train_on_prompt=false masks the prompt by character offsets, which "
            f"{type(tokenizer).__name__} (a slow tokenizer) cannot give; use a fast tokenizer."
        )
    prompts = [story_format.render_prompt(prompt) for prompt in batch["prompt"]]
    texts = [prompt + story for prompt, story in zip(prompts, batch["story"])]
    if story_format.train_on_prompt and tokenizer.is_fast:
        encodings, all_ids = None, encode_ids(tokenizer, texts)
    else:
        encoded = tokenizer(texts, **NO_EXTRAS)
        encodings, all_ids = encoded.encodings, encoded["input_ids"]
    bos, eos = bos_prefix(tokenizer), tokenizer.eos_token_id
    room = story_format.max_length - len(bos)  # text tokens, EOS included
    out: dict[str, list] = {"input_ids": [], "labels": [], "truncated": []}
    for index, ids in enumerate(all_ids):
        masked = 0
        if not story_format.train_on_prompt:
            masked = prompt_tokens(encodings[index], len(prompts[index]))
            if masked >= room - 1:
                continue  # no room for a single story token and EOS: nothing to learn
        truncated = len(ids) >= room
        ids = bos + (ids[:room] if truncated else [*ids, eos])
        out["input_ids"].append(ids)
        if story_format.train_on_prompt:
            out["labels"].append(ids)
        else:
            masked += len(bos)
            out["labels"].append([IGNORE_INDEX] * masked + ids[masked:])
        out["truncated"].append(truncated)
    return out
