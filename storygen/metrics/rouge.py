"""ROUGE-1/2/L/Lsum of generated stories against references, as Google's rouge_score computes
it, under a named convention (stemming, how rougeLsum finds sentences).

Two conventions are named and fixed, so a logged key always means the same numbers:
`storygen` (keys `rouge1`...: Porter stemming, rougeLsum over Punkt sentences) and `hf`
(keys `hf_rouge1`...: Hugging Face `evaluate`'s rouge at its defaults: rouge_score's default
tokenizer, no stemming, rougeLsum split only at line breaks). Any other name is free and
prefixes its keys the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from rouge_score import rouge_scorer

from storygen.data.sentences import split_sentences
from storygen.errors import StorygenError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
LSUM_SPLITS = ("sentences", "newlines")


@dataclass(frozen=True)
class RougeConvention:
    """How ROUGE is computed, and the key prefix that says so in every logged name."""

    name: str = "storygen"
    """`storygen` logs `rouge1`...; any other name logs `<name>_rouge1`..."""
    use_stemmer: bool = True
    """Porter-stem words longer than 3 letters before matching (rouge_score's option)."""
    lsum_split: str = "sentences"
    """rougeLsum's summary units: `sentences` (Punkt, from a package) or `newlines` (the text's
    own line breaks, as rouge_score and `evaluate` read it)."""

    def __post_init__(self) -> None:
        if self.lsum_split not in LSUM_SPLITS:
            raise StorygenError(
                f"rouge.{self.name}.lsum_split={self.lsum_split!r} is not known; "
                "use sentences or newlines."
            )
        if not self.name or not self.name.isidentifier():
            raise StorygenError(
                f"rouge convention name {self.name!r} is not a plain word; it prefixes the "
                "logged keys (e.g. hf -> val/hf_rouge1)."
            )
        fixed = PRESETS.get(self.name)
        if fixed is not None and (self.use_stemmer, self.lsum_split) != fixed:
            stem, split = fixed
            raise StorygenError(
                f"rouge.{self.name}: the `{self.name}` convention is use_stemmer={stem}, "
                f"lsum_split={split} in every run, so its keys compare across runs; put other "
                "settings under a name of your own: '+rouge.mine={use_stemmer:false,"
                "lsum_split:sentences}'."
            )

    def key(self, rouge_type: str) -> str:
        return rouge_type if self.name == "storygen" else f"{self.name}_{rouge_type}"

    def settings(self) -> dict[str, object]:
        """What makes the numbers, without the name: two runs agree on a convention when
        their settings under the same name are equal."""
        return {key: value for key, value in asdict(self).items() if key != "name"}


PRESETS: dict[str, tuple[bool, str]] = {
    "storygen": (True, "sentences"),
    # Hugging Face evaluate's `rouge` at its defaults (metrics/rouge/rouge.py): rouge_score's
    # default tokenizer, use_stemmer=False; rouge_score splits rougeLsum at "\n" only
    "hf": (False, "newlines"),
}
STORYGEN = RougeConvention()
HF = RougeConvention("hf", use_stemmer=False, lsum_split="newlines")


def rouge_scores(
    predictions: list[str],
    references: list[str],
    convention: RougeConvention = STORYGEN,
) -> dict[str, float]:
    """Mean F-measure of each ROUGE type over (prediction, reference) pairs, keyed by the
    convention (`rouge1` or `hf_rouge1`, ...).

    `evaluate`'s default (use_aggregator=True) reports the median of 1000 unseeded bootstrap
    resamples of this mean: an estimate of it that changes from call to call; the mean itself
    is deterministic.
    """
    return {
        key: sum(values) / len(values) if values else 0.0
        for key, values in rouge_per_story(predictions, references, convention).items()
    }


def rouge_per_story(
    predictions: list[str],
    references: list[str],
    convention: RougeConvention = STORYGEN,
) -> dict[str, list[float]]:
    """The F-measure of each (prediction, reference) pair for each ROUGE type, keyed as in
    `rouge_scores`: what an interval over prompts resamples."""
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; pair them up."
        )
    keys = {rouge_type: convention.key(rouge_type) for rouge_type in ROUGE_TYPES}
    scores: dict[str, list[float]] = {key: [] for key in keys.values()}
    if not predictions:
        return scores
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=convention.use_stemmer)
    prepare = _one_sentence_per_line if convention.lsum_split == "sentences" else str
    for prediction, reference in zip(predictions, references):
        pair = scorer.score(prepare(reference), prepare(prediction))
        for rouge_type in ROUGE_TYPES:
            scores[keys[rouge_type]].append(pair[rouge_type].fmeasure)
    return scores


def rouge_under(
    conventions: tuple[RougeConvention, ...], predictions: list[str], references: list[str]
) -> dict[str, float]:
    """The scores of every convention, each under its own keys."""
    names = [convention.name for convention in conventions]
    if len(set(names)) != len(names):
        raise StorygenError(f"rouge conventions {names} repeat a name; name each once.")
    scores: dict[str, float] = {}
    for convention in conventions:
        scores |= rouge_scores(predictions, references, convention)
    return scores


def as_conventions(
    rouge: Mapping[str, Mapping[str, Any] | RougeConvention | None] | None,
) -> tuple[RougeConvention, ...]:
    """The conventions of a config's `rouge` node: name -> settings (`use_stemmer`,
    `lsum_split`), entries set to null dropped; storygen's alone when it is not set."""
    if rouge is None:
        return (STORYGEN,)
    conventions = tuple(
        value if isinstance(value, RougeConvention) else RougeConvention(str(name), **value)
        for name, value in rouge.items()
        if value is not None
    )
    if not conventions:
        raise StorygenError("rouge: no convention is left; keep rouge.storygen (the default).")
    return conventions


def _one_sentence_per_line(text: str) -> str:
    # rouge_score reads rougeLsum's sentences as lines; the other types ignore line breaks
    return "\n".join(split_sentences(text))
