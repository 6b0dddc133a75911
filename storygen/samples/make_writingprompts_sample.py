"""Write the bundled WritingPrompts sample in the raw archive format (fairseq/Kaggle).

    python -m storygen.samples.make_writingprompts_sample [--out-dir DIR]

Writes `{train,valid,test}.wp_source` (prompts) and `.wp_target` (stories), one example per
line, aligned by line number, PTB-tokenized (`do n't`, `it 's`, spaced punctuation, `` ``
and '' quotes), line breaks as the token `<newline>`, prompts opening with a tag such as
`[ WP ]`. Every text is made here from templates, so the tests and offline runs exercise
the real file format without the dataset.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from nltk.tokenize.treebank import TreebankWordTokenizer

from storygen.data.sentences import split_sentences

SEED = 1805
SPLITS = {"train": 120, "valid": 20, "test": 20}
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "writingprompts"
TAGS = ["[ WP ]"] * 8 + [
    "[ wp ]",
    "[ EU ]",
    "[ CW ]",
    "[ IP ]",
    "[ OT ]",
    "[ TT ]",
    "[ HP ]",
    "[ FF ]",
    "[ RF ]",
    "[ Punch ]",
    "[ WP/MP ]",
    "[ Wp ]",
]
HEROES = [
    "a retired astronaut",
    "a night-shift nurse",
    "the last dragon",
    "a tired barista",
    "a ghost who can't read",
    "a detective with no memory",
    "a teenage wizard",
    "the world's worst superhero",
    "a lighthouse keeper",
    "a robot gardener",
    "a time traveler on a budget",
    "the mayor of a tiny moon",
]
GIFTS = [
    "can hear what plants think",
    "wakes up one hour earlier every day",
    "finds a door that wasn't there yesterday",
    "is told they're the chosen one by mistake",
    "gets a letter from their future self",
    "can pause time for exactly ten seconds",
    "inherits a house that won't stop talking",
    "discovers the stars are going out",
]
TWISTS = [
    "they only ever complain about the weather",
    "nobody else has noticed",
    "it's all been a test",
    "the letter is written in their own handwriting",
    "the cat knew all along",
    "it happens every Tuesday",
    "the government wants it kept quiet",
]
NAMES = ["Mara", "Theo", "Ines", "Jonah", "Priya", "Felix", "Ruth", "Oskar", "Lena", "Idris"]
PLACES = [
    "the harbor",
    "an empty train station",
    "the old library",
    "a kitchen at 3 a.m.",
    "the edge of the forest",
    "a crowded market",
    "the roof of the hospital",
]
FEELINGS = ["afraid", "curious", "furious", "strangely calm", "tired", "hopeful"]
OPENINGS = [
    "{name} didn't believe it at first. Who would? {cap_hero} who {gift}?",
    "It started on a Monday, which figures. {name} was {feeling}, and the coffee was cold.",
    '"You\'re late," said the voice. {name} looked around {place} and saw no one.',
    "Nobody tells you what to do when your life turns into a story. {name} had to learn fast.",
]
MIDDLES = [
    "{name} walked to {place} and waited. The wind was loud, but the silence was louder.",
    '"I can\'t do this," {name} said. "I\'m not ready." Nobody answered, which was an answer.',
    "There were rules, of course. Don't tell anyone. Don't look back. Don't stop.",
    "By noon {name} had broken every rule. It felt good, for about an hour.",
    "{name} wrote it all down in a notebook, because that's what sensible people do.",
    "The city kept moving as if nothing had happened. Maybe, for the city, nothing had.",
    "Somewhere a dog barked three times. {name} counted, then counted again.",
    '"Why me?" {name} asked the sky. The sky, as usual, had no opinion.',
]
ENDINGS = [
    "In the end, {name} laughed. It wasn't the ending anyone expected, but it was theirs.",
    "{name} closed the notebook. Tomorrow would be strange, and that was fine.",
    "And that's how {name} learned that {twist}.",
    "The door closed. {name} was {feeling}, and for the first time, free.",
]


def ptb(text: str) -> str:
    """PTB-tokenize prose sentence by sentence, as the archive is: quotes as `` and ''."""
    tokenizer = TreebankWordTokenizer()
    return " ".join(" ".join(tokenizer.tokenize(s)) for s in split_sentences(text))


def make_pair(rng: random.Random) -> tuple[str, str]:
    hero, gift, twist = rng.choice(HEROES), rng.choice(GIFTS), rng.choice(TWISTS)
    prompt = f"{rng.choice(TAGS)} You are {hero} who {gift}, but {twist}."
    fill = {
        "name": rng.choice(NAMES),
        "hero": hero,
        "cap_hero": hero[0].upper() + hero[1:],
        "gift": gift,
        "twist": twist,
        "place": rng.choice(PLACES),
        "feeling": rng.choice(FEELINGS),
    }
    middles = rng.sample(MIDDLES, rng.randint(4, len(MIDDLES)))
    cuts = sorted(rng.sample(range(1, len(middles)), rng.randint(1, 3)))
    paragraphs = [rng.choice(OPENINGS)]
    paragraphs += [" ".join(middles[a:b]) for a, b in zip([0, *cuts], [*cuts, len(middles)])]
    paragraphs.append(rng.choice(ENDINGS))
    story = ""
    for number, paragraph in enumerate(paragraphs):
        if number:
            story += rng.choice([" <newline> <newline> ", " <newline> <newline> ", " <newline> "])
        story += ptb(paragraph.format(**fill))
    tag, text = prompt.split("] ", 1)
    return f"{tag}] {ptb(text)}", story


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    out_dir = parser.parse_args(argv).out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    rng, seen = random.Random(SEED), set()
    for split, count in SPLITS.items():
        pairs = []
        while len(pairs) < count:
            pair = make_pair(rng)
            if pair not in seen:
                seen.add(pair)
                pairs.append(pair)
        for suffix, column in (("wp_source", 0), ("wp_target", 1)):
            lines = "".join(pair[column] + "\n" for pair in pairs)
            (out_dir / f"{split}.{suffix}").write_text(lines, encoding="utf-8")
        print(f"wrote {count} pairs to {out_dir}/{split}.wp_source/.wp_target")


if __name__ == "__main__":
    main()
