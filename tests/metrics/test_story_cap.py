"""The generation cap covers the reference stories unless set, and says when it cuts them."""

from __future__ import annotations

import logging

import pytest

from storygen.errors import StorygenError
from storygen.models.generation import GenerationSettings, with_story_cap
from storygen.models.loader import build_offline_gpt2_tokenizer, prepare_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return prepare_tokenizer(build_offline_gpt2_tokenizer())


def token_count(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


REFERENCES = ["The cat sat on the mat all day long.", "A dog.", "Birds sang in the tall trees."]
PROMPTS = ["Once upon a time,", "Hi", "One morning"]


def test_the_default_cap_is_the_longest_reference_plus_its_eos(tokenizer):
    settings = with_story_cap(GenerationSettings(), tokenizer, PROMPTS, REFERENCES, 512, 1024)
    assert settings.max_new_tokens == max(token_count(tokenizer, r) for r in REFERENCES) + 1


def test_the_default_cap_fits_prompt_and_story_in_max_length_and_context(tokenizer, caplog):
    longest_prompt = max(token_count(tokenizer, p) for p in PROMPTS)
    settings = with_story_cap(GenerationSettings(), tokenizer, PROMPTS, REFERENCES, 12, 1024)
    assert settings.max_new_tokens == 12 - longest_prompt
    settings = with_story_cap(GenerationSettings(), tokenizer, PROMPTS, REFERENCES, 512, 9)
    assert settings.max_new_tokens == 9 - longest_prompt
    # bounded below the references' median: every comparison of lengths is off, say so
    assert "is below the median reference story" in caplog.text


def test_an_explicit_cap_is_kept_and_warned_about_once_when_it_cuts_most_stories(tokenizer, caplog):
    explicit = GenerationSettings(max_new_tokens=3)
    with caplog.at_level(logging.WARNING, logger="storygen.models.generation"):
        for _ in range(3):
            assert with_story_cap(explicit, tokenizer, PROMPTS, REFERENCES, 512, None) == explicit
    warnings = [r for r in caplog.records if "generation.max_new_tokens=3" in r.message]
    assert len(warnings) == 1 and "below the median" in warnings[0].message

    caplog.clear()
    roomy = GenerationSettings(max_new_tokens=100)
    assert with_story_cap(roomy, tokenizer, PROMPTS, REFERENCES, 512, None) == roomy
    assert not caplog.records


def test_an_explicit_cap_past_the_context_is_refused(tokenizer):
    longest_prompt = max(token_count(tokenizer, p) for p in PROMPTS)
    fits = GenerationSettings(max_new_tokens=64 - longest_prompt)
    assert with_story_cap(fits, tokenizer, PROMPTS, REFERENCES, 512, 64) == fits
    too_long = GenerationSettings(max_new_tokens=65 - longest_prompt)
    with pytest.raises(StorygenError, match=rf"context of 64 tokens; .*<={64 - longest_prompt}"):
        with_story_cap(too_long, tokenizer, PROMPTS, REFERENCES, 512, 64)
