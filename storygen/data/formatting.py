"""Turn (prompt, story) pairs into token ids and labels, the same way for every dataset."""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from storygen.errors import StorygenError

IGNORE_INDEX = -100
# token ids only: no attention masks or special tokens the collator would throw away
NO_EXTRAS = {"add_special_tokens": False, "return_attention_mask": False}
# The layout of a tokenized example, part of the cache key: bump it when tokenize_stories
# changes the tokens it writes, so no run reads examples laid out the old way.
LAYOUT_VERSION = 2


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
    """tokens per example, EOS included; longer stories are cut before the EOS"""

    def __post_init__(self) -> None:
        if "{prompt}" not in self.template:
            raise StorygenError(
                f"data.prompt_template={self.template!r} has no `{{prompt}}` placeholder; "
                "add one, e.g. 'Prompt: {prompt}\\nStory: '."
            )
        if self.max_length < 2:
            raise StorygenError(f"data.max_length={self.max_length} must be at least 2.")

    def render_prompt(self, prompt: str) -> str:
        return self.template.format(prompt=prompt)


def tokenize_stories(
    batch: dict[str, list[str]], tokenizer: PreTrainedTokenizerBase, story_format: StoryFormat
) -> dict[str, list[list[int]]]:
    """Batched `datasets.map` function: input_ids and labels for each (prompt, story).

    A masked prompt is tokenized apart from its story so the prompt/story boundary is exact;
    a trained-on prompt is tokenized with its story in one call, as one text. Each example
    ends with EOS and keeps EOS's label, so the model learns where stories stop. A masked
    prompt that leaves no room for its story within max_length drops the example.
    """
    prompts = [story_format.render_prompt(prompt) for prompt in batch["prompt"]]
    bos, eos = bos_prefix(tokenizer), tokenizer.eos_token_id
    cut = story_format.max_length - 1 - len(bos)
    if story_format.train_on_prompt:
        texts = [prompt + story for prompt, story in zip(prompts, batch["story"])]
        tokenized = tokenizer(texts, **NO_EXTRAS)["input_ids"]
        input_ids = [bos + ids[:cut] + [eos] for ids in tokenized]
        return {"input_ids": input_ids, "labels": input_ids}
    prompt_ids = tokenizer(prompts, **NO_EXTRAS)["input_ids"]
    story_ids = tokenizer(batch["story"], **NO_EXTRAS)["input_ids"]
    input_ids, labels = [], []
    for prompt, story in zip(prompt_ids, story_ids):
        if len(prompt) >= cut:
            continue  # no room for a single story token: nothing to learn (counted by the caller)
        ids = bos + (prompt + story)[:cut] + [eos]
        masked = min(len(bos) + len(prompt), len(ids) - 1)
        input_ids.append(ids)
        labels.append([IGNORE_INDEX] * masked + ids[masked:])
    return {"input_ids": input_ids, "labels": labels}
