"""WritingPrompts (Fan et al., 2018): the raw archive files, the hub mirror, or the bundled sample.

The raw text is PTB-tokenized (`do n't`, `it 's`, `` `` ``/`''` quotes), line breaks are the
token `<newline>`, and prompts open with a tag such as `[ WP ]`. Cleaning (on by default)
undoes all three; the tag is kept as a column. Every source becomes a DatasetDict with
splits train/validation/test and columns `prompt`, `story` and `tag`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from itertools import zip_longest
from pathlib import Path

from datasets import Dataset
from nltk.tokenize.treebank import TreebankWordDetokenizer

from storygen.data.cache import resolve_hub_revision
from storygen.data.streams import (
    Split,
    load_hub_splits,
    map_split,
    stream_train,
    string_dataset,
    utf8_lines,
    without_blanks,
)
from storygen.errors import StorygenError

log = logging.getLogger(__name__)

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "samples" / "writingprompts"
FILE_SPLITS = {"train": "train", "validation": "valid", "test": "test"}
SOURCES = ("hub", "files", "sample")
# `[ WP ]`, `[ EU ]`, `[ Punch ]`, `[ WP/MP ]`, ... in any case, at the start of a prompt;
# a prompt may carry several (`[ WP ] [ EU ]`)
TAGS = re.compile(r"^\s*(?:\[[^\]]*\]\s*)+")
TAG = re.compile(r"\[\s*([A-Za-z][A-Za-z/ ]*?)\s*\]")
NEWLINES = re.compile(r"(?:\s*<newline>)+\s*")


# Traces of PTB tokenization: split contractions, spaced punctuation (an ellipsis too), `` and
# '' quotes, single quotes standing alone.
PTB_TRACE = re.compile(
    r"(?:\s(?:n't|'s|'re|'ve|'ll|'d|'m)\b|``|''|\s[,.!?;:)](?:\s|$)|\w\s\.\.\.|\(\s|(?:^|\s)'(?:\s|$))",
    re.I,
)
# A scene break PTB split into dashes (`-----` -> `-- -- -`), alone on its line
SPLIT_DASHES = re.compile(r"^-+(?: +-+)+$")
# The detokenizer glues an ellipsis to the next word (`n't ... fine` -> `n't...fine`) but
# leaves it apart from a word before it at the end of a line or quote (`cat ...`)
ELLIPSIS_BEFORE_WORD = re.compile(r"\.\.\.(?=\w)")
ELLIPSIS_AFTER_WORD = re.compile(r"(?<=\w)\s+\.\.\.")
# Between lines detokenized in one call: neither whitespace nor a word character, and in none of
# the detokenizer's patterns
LINE_BREAK = "\x00"


@lru_cache(maxsize=1)
def _detokenizer() -> TreebankWordDetokenizer:
    return TreebankWordDetokenizer()


def detokenize(text: str) -> str:
    """PTB tokens back to prose: `do n't` -> `don't`, `` `` hi '' `` -> `"hi"`, no space before `,`,
    `said ' hi '` -> `said 'hi'`, `wait ... what` -> `wait... what`, `-- -- -` -> `-----`.

    Text with no trace of PTB tokenization is left as it is, so cleaning twice changes nothing.
    """
    return detokenize_lines([text])[0]


def detokenize_lines(lines: list[str]) -> list[str]:
    """detokenize() of each line. The lines that need NLTK's detokenizer go through it in one
    call, joined by LINE_BREAK: ~30 regex passes over a story instead of over each of its lines."""
    prose, joined, at = [], [], []
    for line in lines:
        if SPLIT_DASHES.match(line.strip()):
            prose.append("".join(line.split()))
        elif not PTB_TRACE.search(line):
            prose.append(" ".join(line.split()))
        else:
            tokens = _attach_single_quotes(line.split())
            if LINE_BREAK in line or not _joins_safely(tokens):
                prose.append(_untokenize(tokens))
            else:
                at.append(len(prose))
                prose.append("")
                joined += [*tokens, LINE_BREAK]
    if at:
        pieces = _untokenize(joined[:-1]).split(LINE_BREAK)
        for index, piece in zip(at, pieces, strict=True):
            prose[index] = piece.strip()
    return prose


def _untokenize(tokens: list[str]) -> str:
    return _glue_ellipses(_detokenizer().detokenize(tokens))


def _glue_ellipses(prose: str) -> str:
    if "..." not in prose:
        return prose
    return ELLIPSIS_AFTER_WORD.sub("...", ELLIPSIS_BEFORE_WORD.sub("... ", prose))


def _joins_safely(tokens: list[str]) -> bool:
    r"""Whether a line detokenizes to the same prose between LINE_BREAKs as alone.

    Alone, its first and last tokens meet the string's ends; joined, a space and `\x00`. Some
    patterns take that space or that character beside the token: `\x00 's` -> `\x00's`,
    `\x00 , x` -> `\x00, x`, `x ... \x00` -> `x...\x00`, `x -- \x00` -> `x--\x00`, and so on
    for a first `n't`, `'`, `''`, `.`, `?`, `!`, `;`, `:`, `%`, `)`, `--` and a last `'`, `(`,
    `$`, `#`, `` ` ``. Lines that begin with a letter, digit, `` ` ``, `"` or `(` and end with a
    letter, digit, `.!?,;:)"` or `''` (not `...`) meet none of them; the rest go alone.
    """
    first, last = tokens[0], tokens[-1]
    starts_safely = (first[0].isalnum() and first.lower() != "n't") or first[0] in '`"('
    ends_safely = (
        last[-1].isalnum()
        or (last[-1] in '.!?,;:)"' and not last.endswith(".."))
        or last.endswith("''")
    )
    return starts_safely and ends_safely


def _attach_single_quotes(tokens: list[str]) -> list[str]:
    """Glue PTB's standalone `'` tokens to the words they quote: the detokenizer would glue
    each to the word before it (`said , ' hi '` -> `said,' hi'`). After a plural (`the dogs '
    bowls`) an unpaired `'` is a possessive; quotes still unpaired are left alone."""
    if "'" not in tokens:
        return tokens
    quotes = [i for i, token in enumerate(tokens) if token == "'"]
    if len(quotes) % 2:
        quotes = [i for i in quotes if not (i > 0 and tokens[i - 1][-1:] in ("s", "S"))]
    if not quotes or len(quotes) % 2:
        return tokens
    tokens = list(tokens)
    for opening, closing in zip(quotes[::2], quotes[1::2]):
        if closing - opening < 2:
            continue  # `' '`: nothing quoted
        tokens[opening + 1] = "'" + tokens[opening + 1]
        tokens[closing - 1] = tokens[closing - 1] + "'"
        tokens[opening] = tokens[closing] = ""
    return [token for token in tokens if token]


def split_tag(text: str) -> tuple[str, str]:
    """(`WP`, rest) for `[ WP ] rest`, (`WP,EU`, rest) for `[ WP ] [ EU ] rest`; ('', text)
    when there is no tag."""
    match = TAGS.match(text)
    tags = [tag.upper().replace(" ", "") for tag in TAG.findall(match.group(0))] if match else []
    if not tags:
        return "", text.strip()
    return ",".join(tags), text[match.end() :].strip()


def clean_prompt(text: str) -> str:
    """The prompt as prose, without its leading tag."""
    _, prompt = split_tag(text)
    return detokenize(NEWLINES.sub(" ", prompt)).strip()


def clean_story(text: str, max_words: int | None = 1000) -> str:
    """The story as prose: first `max_words` words (as fairseq keeps), real line breaks.

    One `<newline>` becomes a line break, a run of them a paragraph break.
    """
    text = text.replace("\n", " <newline> ")  # real line breaks count like the token
    if max_words is not None:
        text = _cut_after_words(text, max_words)
    lines = NEWLINES.sub(lambda run: "\n\n" if run.group(0).count("<newline>") > 1 else "\n", text)
    return "\n".join(detokenize_lines(lines.strip().split("\n"))).strip()


def _cut_after_words(text: str, max_words: int) -> str:
    """Keep the first `max_words` words; `<newline>` tokens are not words."""
    tokens = text.split()
    if 0 <= max_words < len(tokens) - tokens.count("<newline>"):
        words = [index for index, token in enumerate(tokens) if token != "<newline>"]
        tokens = tokens[: words[max_words]]
    return " ".join(tokens)


def read_lines(path: Path) -> list[str]:
    return list(iter_lines(path))


def check_split_file(path: Path) -> None:
    if not path.is_file():
        raise StorygenError(
            f"split file {path} does not exist; a WritingPrompts data_dir holds "
            "{train,valid,test}.wp_source and .wp_target."
        )


def iter_lines(path: Path) -> Iterator[str]:
    """The lines of a split file, read one at a time (train's stories are ~1 GB).

    Prompts and stories pair up by "\n" alone. str.splitlines() (and text-mode files) would
    also break at \r, form feeds, \x1c-\x1e, \x85, \u2028 and \u2029, which Reddit text holds.
    """
    check_split_file(path)
    for line in utf8_lines(path):
        yield line.removesuffix("\n").removesuffix("\r")


def read_split_files(data_dir: Path, split_name: str, work_dir: Path | None = None) -> Dataset:
    """Aligned prompt/story lines (as Arrow under `work_dir` where one is given); blank pairs
    are skipped and counted, misalignment refused."""
    source = data_dir / f"{split_name}.wp_source"
    target = data_dir / f"{split_name}.wp_target"
    counts = {"prompts": 0, "stories": 0, "skipped": 0}

    def pairs() -> Iterator[tuple[str, str]]:
        for prompt, story in zip_longest(iter_lines(source), iter_lines(target)):
            counts["prompts"] += prompt is not None
            counts["stories"] += story is not None
            if prompt and story and prompt.strip() and story.strip():
                yield prompt, story
            else:
                counts["skipped"] += 1

    check_split_file(source)
    check_split_file(target)
    dataset = string_dataset(pairs(), ["prompt", "story"], work_dir)
    if counts["prompts"] != counts["stories"]:
        raise StorygenError(
            f"{source} has {counts['prompts']:,} lines but {target} has {counts['stories']:,}; "
            "prompts and stories pair up by line number, so the files must have the same "
            "number of lines."
        )
    if counts["skipped"]:
        log.warning(
            "Skipped %d blank prompt/story pairs in %s / %s", counts["skipped"], source, target
        )
    return dataset


@dataclass(frozen=True)
class WritingPromptsCorpus:
    """Where WritingPrompts comes from and how its raw text is cleaned."""

    source: str = "hub"
    """hub | files | sample"""
    hub_id: str = "euclaise/writingprompts"
    revision: str | None = None
    """with source=hub: the dataset's commit, tag or branch (None: main); pins the data"""
    data_dir: str | None = None
    """with source=files: the folder holding {train,valid,test}.wp_source/.wp_target"""
    clean: bool = True
    """detokenize, turn <newline> into line breaks, strip the prompt's tag"""
    max_story_words: int | None = 1000

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise StorygenError(
                f"data.corpus.source={self.source!r} is not known; use one of {', '.join(SOURCES)}."
            )
        if self.source == "files" and not (self.data_dir and Path(self.data_dir).is_dir()):
            raise StorygenError(
                f"data.corpus.data_dir={self.data_dir!r} is not a directory; point it at the "
                "folder holding {train,valid,test}.wp_source and .wp_target."
            )

    def hub_revision(self) -> str | None:
        if self.source != "hub":
            return None
        return resolve_hub_revision(self.hub_id, self.revision)

    def source_files(self) -> list[Path]:
        if self.source == "hub":
            return []
        data_dir = SAMPLE_DIR if self.source == "sample" else Path(self.data_dir)
        return [
            data_dir / f"{name}.{suffix}"
            for name in FILE_SPLITS.values()
            for suffix in ("wp_source", "wp_target")
            if (data_dir / f"{name}.{suffix}").is_file()
        ]

    def load(
        self,
        streaming: bool = False,
        num_proc: int | None = None,
        work_dir: Path | None = None,
        train_openings: bool = True,
        finish_train_later: bool = False,
    ) -> dict[str, Split]:
        """train_openings is moot: every story comes with its prompt. finish_train_later
        cleans train's prompts (and reads their tags) but leaves its stories to finish_train:
        cleaning a story costs several times tokenizing it."""
        raw = stream_train(self._load_raw(streaming, work_dir), streaming)
        later = {"train": finish_train_later, "validation": False, "test": False}
        return {
            split: map_split(
                pairs,
                self._clean_prompts if later[split] else self._clean,
                f"Cleaning {'prompts ' if later[split] else ''}({split})",
                num_proc=num_proc,
            )
            for split, pairs in raw.items()
        }

    def finish_train(self, batch: dict[str, list[str]]) -> dict[str, list[str]]:
        """The stories of train rows loaded with finish_train_later, cleaned as load cleans."""
        if not self.clean:
            return batch
        return batch | {"story": [clean_story(s, self.max_story_words) for s in batch["story"]]}

    def _load_raw(self, streaming: bool, work_dir: Path | None) -> dict[str, Split]:
        if self.source == "hub":
            names = {"train": "train", "validation": "validation", "test": "test"}
            splits = load_hub_splits(self.hub_id, names, streaming, self.revision)
            pair = ["prompt", "story"]
            return {
                split: without_blanks(rows.select_columns(pair), pair, f"{self.hub_id} {split}")
                for split, rows in splits.items()
            }
        data_dir = SAMPLE_DIR if self.source == "sample" else Path(self.data_dir)
        return {
            split: read_split_files(data_dir, name, work_dir) for split, name in FILE_SPLITS.items()
        }

    def _clean_prompts(self, batch: dict[str, list[str]]) -> dict[str, list[str]]:
        return self._clean({"prompt": batch["prompt"], "story": []}) | {"story": batch["story"]}

    def _clean(self, batch: dict[str, list[str]]) -> dict[str, list[str]]:
        tags = [split_tag(prompt)[0] for prompt in batch["prompt"]]
        if not self.clean:
            return {"prompt": batch["prompt"], "story": batch["story"], "tag": tags}
        return {
            "prompt": [clean_prompt(prompt) for prompt in batch["prompt"]],
            "story": [clean_story(story, self.max_story_words) for story in batch["story"]],
            "tag": tags,
        }
