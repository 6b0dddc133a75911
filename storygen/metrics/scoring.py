"""Prompts -> stories -> scores -> JSON lines: the one path the test stage (the story-metrics
callback) and `storygen.evaluate` share, so the same checkpoint, prompts, settings, batch size,
seed and ROUGE conventions give the same numbers and the same files in both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from storygen.data.datamodule import StoryPrompt
from storygen.metrics.rouge import STORYGEN, RougeConvention
from storygen.metrics.story import per_story_scores, score_stories
from storygen.models.generation import (
    GeneratedStory,
    GenerationSettings,
    generate_stories,
    model_context,
    with_story_cap,
)


def generate_and_score(
    backbone: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[StoryPrompt],
    settings: GenerationSettings,
    max_length: int,
    batch_size: int,
    seed: int,
    rouge: tuple[RougeConvention, ...] = (STORYGEN,),
) -> tuple[list[GeneratedStory], dict[str, float]]:
    """Stories for a prompt set and their metrics (names without a stage prefix)."""
    inputs = [prompt.model_input for prompt in prompts]
    references = [prompt.reference for prompt in prompts]
    settings = with_story_cap(
        settings, tokenizer, inputs, references, max_length, model_context(backbone)
    )
    stories = generate_stories(backbone, tokenizer, inputs, settings, batch_size, seed)
    metrics = score_stories(
        [story.text for story in stories],
        references,
        [s.ended_with_eos for s in stories],
        rouge,
    )
    metrics["gen_tokens"] = sum(s.new_tokens for s in stories) / len(stories)
    metrics["gen_truncated"] = sum(s.truncated for s in stories) / len(stories)
    metrics["gen_cap"] = float(settings.max_new_tokens)
    return stories, metrics


def story_records(
    prompts: list[StoryPrompt],
    stories: list[GeneratedStory],
    rouge: tuple[RougeConvention, ...] = (STORYGEN,),
) -> list[dict[str, Any]]:
    """One record per story, as `generations/*.jsonl` and the W&B table hold them, with the
    story's own scores (`scores`: ROUGE, words, repetition, EOS), so `storygen.compare` can put
    intervals over prompts on the run's means without generating again."""
    scores = per_story_scores(
        [story.text for story in stories],
        [prompt.reference for prompt in prompts],
        [story.ended_with_eos for story in stories],
        rouge,
    )
    return [
        {
            "prompt": prompt.prompt,
            "reference": prompt.reference,
            "generation": story.text,
            "new_tokens": story.new_tokens,
            "ended_with_eos": story.ended_with_eos,
            "scores": story_scores,
        }
        for prompt, story, story_scores in zip(prompts, stories, scores)
    ]


def write_generations(path: Path, records: list[dict[str, Any]]) -> None:
    """The records as JSON lines, for reading and for `storygen.compare`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    path.write_text("".join(lines), encoding="utf-8")
