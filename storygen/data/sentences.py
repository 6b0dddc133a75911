"""Sentence boundaries from a Punkt model shipped in a package, so nothing is downloaded."""

from __future__ import annotations

from functools import lru_cache

import punkt


@lru_cache(maxsize=1)
def _english():
    return punkt.tokenizer_for("english")


def split_sentences(text: str) -> list[str]:
    return _english().tokenize(text)


def split_opening(text: str, sentences: int = 1) -> tuple[str, str]:
    """Split a story after its first `sentences` sentences: (opening, rest).

    The rest keeps its leading whitespace, so opening + rest == text and the two tokenize
    to the same ids as the whole story (GPT-2's BPE splits before a space).
    """
    spans = list(_english().span_tokenize(text))
    if len(spans) <= sentences:
        return text, ""
    cut = spans[sentences - 1][1]
    return text[:cut], text[cut:]
