"""split_opening runs Punkt on a prefix of each story: it must split exactly as Punkt on the
whole story does, on real stories and on texts built to break a prefix."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storygen.data import sentences
from storygen.data.sentences import split_opening
from storygen.data.tinystories import SAMPLE_FILES, read_stories_txt, tidy
from storygen.data.writingprompts import SAMPLE_DIR, clean_story, read_lines
from tests.data.test_tinystories import V2_STORY


def whole_story_split(text: str, count: int) -> tuple[str, str]:
    """The split as it was made before prefixes: Punkt over the whole story."""
    spans = list(sentences._english().span_tokenize(text))
    if len(spans) <= count:
        return text, ""
    cut = spans[count - 1][1]
    return text[:cut], text[cut:]


def real_stories() -> list[str]:
    tiny = [tidy(s) for path in SAMPLE_FILES.values() for s in read_stories_txt(path)]
    prose = [
        clean_story(line)
        for split in ("train", "valid", "test")
        for line in read_lines(SAMPLE_DIR / f"{split}.wp_target")
    ]
    return [*tiny, *prose, tidy(V2_STORY)]


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("first_prefix", [1, 7, 40, sentences.FIRST_PREFIX])
def test_the_bundled_samples_and_test_excerpts_split_as_whole_stories(count, first_prefix):
    stories = real_stories()
    assert len(stories) > 400
    for story in stories:
        expected = whole_story_split(story, count)
        assert split_opening(story, count, first_prefix) == expected, story[:200]


EDGE_CASES = [
    "",
    "   ",
    "No boundary at all in this story, only a long run of words " * 20,
    "One sentence only.",
    # an abbreviation at every place a prefix could end
    "Mr. Fox met Mrs. Hen at 5 p.m. on the hill. Dr. Owl said hi. They ran.",
    "It was Mr. Smith. He came at 3 p.m. He left.",
    # ellipses, spaced ellipses and runs of marks straddling the cut
    "Wait . . . what? Go... now!!! He ran?! Yes.",
    'She said, "Stop." He stopped. (He was sad.) "Why?" she asked.',
    "A" * 1000 + ". B ran. C sat.",
    "Short. " + "x" * 600 + " end. Then more. And more.",
    "Hi.\n\nThere.\nEnd.",
]


@pytest.mark.parametrize("text", EDGE_CASES)
@pytest.mark.parametrize("count", [1, 2])
def test_edge_cases_split_as_whole_stories(text, count):
    for first_prefix in range(1, max(2, len(text) + 2), 3):
        assert split_opening(text, count, first_prefix) == whole_story_split(text, count)


def test_an_abbreviation_at_the_prefix_end_does_not_end_the_opening():
    text = "Once upon a time, Mr. Fox lived in a den. He was hungry. One day he ate."
    cut_after_mr = text.index("Mr.") + 3  # the prefix ends right after "Mr."
    assert split_opening(text, 1, cut_after_mr) == (
        "Once upon a time, Mr. Fox lived in a den.",
        " He was hungry. One day he ate.",
    )


WORDS = st.sampled_from(
    ["Mr.", "Mrs.", "Dr.", "p.m.", "U.S.", "etc.", "Tom", "ran", "the", "dog", "5.", "No.",
     "a", "He", "she", "'s", "\"Hi", "there.\"", "(sad.)", "...", ". . .", "!!!", "?!", "Oh!",
     "end.", "Yes?", "--", "A.", "i.e.", "St.", "\n", "\n\n", "it.", "Then"]
)  # fmt: skip
TEXT = st.lists(WORDS, max_size=40).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, count=st.integers(1, 3), first_prefix=st.integers(1, 60))
def test_random_texts_split_as_whole_stories(text, count, first_prefix):
    assert split_opening(text, count, first_prefix) == whole_story_split(text, count)
