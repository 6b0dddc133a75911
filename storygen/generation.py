"""Batched story generation: left-padded prompts, KV cache, seeded sampling."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

from storygen.data.formatting import bos_prefix


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 96
    do_sample: bool = True
    temperature: float = 0.8
    top_p: float = 0.95
    top_k: int = 50
    repetition_penalty: float = 1.0


@dataclass(frozen=True)
class GeneratedStory:
    text: str
    new_tokens: int
    ended_with_eos: bool
    """the model stopped by itself before `max_new_tokens`"""


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
                **asdict(settings),
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
