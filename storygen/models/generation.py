"""Batched story generation: left-padded prompts, KV cache, seeded sampling."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from statistics import median

import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from storygen.data.formatting import bos_prefix
from storygen.errors import StorygenError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int | None = None
    """the cap on a story's tokens; None: long enough for the prompt set's references
    (`with_story_cap`)"""
    do_sample: bool = True
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.0

    def generate_kwargs(self) -> dict:
        """`model.generate`'s options: greedy decoding gets no sampling knobs, which
        transformers would otherwise warn about in the middle of the printed stories."""
        options = asdict(self)
        if not self.do_sample:
            for knob in ("temperature", "top_p", "top_k"):
                options.pop(knob)
        return options


@dataclass(frozen=True)
class GeneratedStory:
    text: str
    new_tokens: int
    ended_with_eos: bool
    """the model stopped by itself before `max_new_tokens`"""

    @property
    def truncated(self) -> bool:
        """Cut by the cap: generation stops only at EOS or at `max_new_tokens`."""
        return not self.ended_with_eos


def with_story_cap(
    settings: GenerationSettings,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    references: list[str],
    max_length: int,
    context: int | None,
) -> GenerationSettings:
    """The settings with a concrete `max_new_tokens`, so generated and reference lengths compare.

    The default cap is the longest reference of the prompt set in tokens, plus its EOS, bounded
    so that prompt and story fit in `max_length` (the longest rows training saw) and the
    model's context. An explicit cap is kept (refused past the context, where GPT-2's position
    table ends); below the references' median it cuts most stories, which is warned about once.
    """
    ref_tokens = [len(ids) for ids in tokenizer(references, add_special_tokens=False)["input_ids"]]
    if not ref_tokens:  # no prompts, nothing to generate
        return replace(settings, max_new_tokens=settings.max_new_tokens or 1)
    ref_median = median(ref_tokens)
    longest_prompt = encode_prompts(tokenizer, prompts)["input_ids"].shape[1]
    if settings.max_new_tokens is not None:
        if context is not None and longest_prompt + settings.max_new_tokens > context:
            raise StorygenError(
                f"generation.max_new_tokens={settings.max_new_tokens} after a "
                f"{longest_prompt}-token prompt runs past the model's context of {context} "
                f"tokens; set generation.max_new_tokens<={context - longest_prompt} or null."
            )
        if settings.max_new_tokens < ref_median:
            _warn_once(
                f"generation.max_new_tokens={settings.max_new_tokens} is below the median "
                f"reference story ({ref_median:g} tokens): most stories are cut, and length and "
                "ROUGE compare cut stories; set it to null to cover the references."
            )
        return settings
    room = min(max_length, context or max_length) - longest_prompt
    cap = max(1, min(max(ref_tokens) + 1, room))
    if cap < ref_median:
        _warn_once(
            f"the story cap of {cap} tokens (data.max_length={max_length} and the model's "
            f"context minus a {longest_prompt}-token prompt) is below the median reference "
            f"story ({ref_median:g} tokens): most stories are cut."
        )
    return replace(settings, max_new_tokens=cap)


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def model_context(model: PreTrainedModel) -> int | None:
    """Positions the model can attend over (GPT-2's n_positions, Mistral's 32k), if it says."""
    return getattr(model.config, "max_position_embeddings", None)


@torch.no_grad()
def generate_stories(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    settings: GenerationSettings,
    batch_size: int = 8,
    seed: int = 0,
) -> list[GeneratedStory]:
    """Continue each prompt; a seed fixes the stories and leaves training's RNG untouched."""
    if settings.max_new_tokens is None:
        raise ValueError("settings.max_new_tokens is None; resolve it with with_story_cap first.")
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    stories: list[GeneratedStory] = []
    was_training = model.training
    model.eval()
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)
        for start in range(0, len(prompts), batch_size):
            encoded = encode_prompts(tokenizer, prompts[start : start + batch_size]).to(device)
            output = model.generate(
                **encoded,
                **settings.generate_kwargs(),
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=eos,
            )
            new_tokens = output[:, encoded["input_ids"].shape[1] :].cpu()
            for row in new_tokens:
                ended = bool((row == eos).any())
                length = int((row == eos).nonzero()[0, 0]) if ended else len(row)
                text = tokenizer.decode(row[:length], skip_special_tokens=True)
                stories.append(GeneratedStory(text.strip(), length, ended))
    model.train(was_training)
    return stories


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: list[str]) -> BatchEncoding:
    """Prompts as training saw them (BOS first where the model has one), padded on the
    tokenizer's side (left, for generation)."""
    bos = bos_prefix(tokenizer)
    ids = [bos + row for row in tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    return tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
