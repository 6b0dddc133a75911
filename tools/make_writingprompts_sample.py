"""Generate the bundled WritingPrompts-style sample corpus.

Writes ``train.wp_source``/``train.wp_target`` (120 pairs), ``valid.*`` (20 pairs) and
``test.*`` (20 pairs) into ``storygen/samples/writingprompts/``, the bundled data the
package ships (or into ``--out-dir``). The files use the raw WritingPrompts archive layout
(Fan et al., 2018, as shipped with fairseq): one example per line, line N of ``X.wp_source``
(the prompt) pairs with line N of ``X.wp_target`` (the story); text is PTB-tokenized
(``do n't``, ``it 's``, spaced punctuation, double quotes as two backticks and two
apostrophes); line breaks are the token ``<newline>``; and every prompt opens with a tag
such as ``[ WP ]``.

The prompts and stories are written from scratch by a few genre skeletons (science fiction,
fantasy, horror, humor, everyday life) filled from word pools; no text comes from the real
WritingPrompts dataset. The corpus exists so the quickstart and the test suite can exercise
the real file format fully offline. Generation is seeded, so rerunning the script reproduces
byte-identical files.

Usage::

    python tools/make_writingprompts_sample.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from nltk.tokenize.treebank import TreebankWordTokenizer

from storygen.data.sentences import split_sentences

SEED = 20180513
SPLITS = {"train": 120, "valid": 20, "test": 20}
MIN_WORDS, MAX_WORDS = 120, 400
MIN_PARAGRAPHS, MAX_PARAGRAPHS = 3, 8
DEFAULT_OUT_DIR = Path(__file__).resolve().parents[1] / "storygen" / "samples" / "writingprompts"
# Mostly `[ WP ]`, as in the archive; the rest are its rarer tags and casings.
TAGS = ["WP"] * 14 + ["EU", "CW", "IP", "OT", "TT", "HP", "FF", "RF", "Punch", "WP/MP"]
TAGS += ["wp", "Wp"]

WOMEN = ["Mara", "Ines", "Priya", "Ruth", "Lena", "Adaeze", "Hana", "Greta", "Sofia", "Wren"]
MEN = ["Theo", "Jonah", "Felix", "Oskar", "Idris", "Mateo", "Kenji", "Silas", "Arjun", "Bram"]
FEELINGS = ["afraid", "curious", "furious", "strangely calm", "exhausted", "hopeful", "numb"]
TIMES = ["at 3 a.m.", "on a Tuesday", "in the middle of a thunderstorm", "just after lunch"]
ASIDES = [
    "(which, in hindsight, was a mistake)",
    "(nobody ever reads the manual)",
    "(the third time that week)",
    "(and I'm being generous here)",
]

# Science fiction
SHIPS = ["the Long Patience", "the Meridian", "Hollow Star", "the Quiet Ledger", "Tern-7"]
ALIENS = ["the Vel", "the Oorin", "the Glass Choir", "the Tessellate", "the Murmur"]
SF_ODDITIES = [
    "they only communicate through cooking recipes",
    "they think our radio jingles are religious texts",
    "they ca n't perceive anything painted blue",
    "they 've been watching us through our microwaves",
    "they apologise for everything , constantly",
]
SF_JOBS = ["the ship 's cook", "a junior translator", "the night-shift janitor", "the medic"]

# Fantasy
CREATURES = ["dragon", "lich", "troll", "sea witch", "griffin", "forest spirit"]
QUESTS = [
    "return a library book that is four hundred years overdue",
    "deliver a single apology to the king of the dead",
    "find the last honest merchant in the capital",
    "carry a sleeping god across the border",
]
ITEMS = ["a rusted key", "a map drawn in milk", "a sword that hums", "a jar of bottled thunder"]

# Horror
HAUNTS = [
    "the phone in the hallway",
    "the mirror above the sink",
    "the baby monitor",
    "the old chest freezer",
    "the house 's smart speaker",
]
RULES = [
    "never answer when it says your full name",
    "always leave one light on in the kitchen",
    "do n't count the stairs out loud",
    "if you hear knocking from inside the walls , knock back twice",
]

# Humor
MUNDANE_POWERS = [
    "can hear what houseplants think",
    "always knows the exact price of any sandwich",
    "can talk to pigeons , who are all extremely rude",
    "wakes up one minute earlier every day",
    "can teleport , but only into IKEA",
]
COMPLAINTS = [
    "they only ever complain about the weather",
    "nobody believes it 's useful",
    "the gods have filed a noise complaint",
    "your landlord wants to charge extra for it",
]

# Everyday life
ERRANDS = [
    "clearing out a late grandmother 's flat",
    "driving a stranger to the airport",
    "working the last shift before the diner closes forever",
    "teaching an old neighbour to use a smartphone",
]
OBJECTS = ["a shoebox of letters", "a cassette tape", "a dog-eared recipe card", "a bus ticket"]


@dataclass
class Person:
    name: str
    they: str  # "she" or "he"
    them: str
    their: str

    @property
    def They(self) -> str:
        return self.they.capitalize()

    @property
    def Their(self) -> str:
        return self.their.capitalize()


def make_person(rng: random.Random, avoid: str = "") -> Person:
    while True:
        if rng.random() < 0.5:
            person = Person(rng.choice(WOMEN), "she", "her", "her")
        else:
            person = Person(rng.choice(MEN), "he", "him", "his")
        if person.name != avoid:
            return person


def pick(rng: random.Random, options: list[str], k: int) -> list[str]:
    """`k` of the story beats, kept in the order they are written in."""
    return [options[i] for i in sorted(rng.sample(range(len(options)), min(k, len(options))))]


def science_fiction(rng: random.Random) -> tuple[str, list[str]]:
    ship, alien, odd = rng.choice(SHIPS), rng.choice(ALIENS), rng.choice(SF_ODDITIES)
    job, cap = rng.choice(SF_JOBS), make_person(rng)
    prompt = rng.choice(
        [
            f"Humanity finally makes first contact with {alien} . The problem : {odd} .",
            f"You are {job} aboard {ship} , and you 're the only one who can talk to {alien} .",
            f"First contact went perfectly . Then we learned that {odd} .",
        ]
    )
    opening = rng.choice(
        [
            f"The message from {alien} arrived {rng.choice(TIMES)}, which is when all the "
            f"important messages arrive. I was {job} on {ship}, so naturally nobody woke me.",
            f"They told us first contact would be a moment of wonder. Nobody mentioned that "
            f"{odd}. I'm {job}, and somehow that made it my problem.",
        ]
    )
    beats = [
        f"Captain {cap.name} found me in the galley. \"You're the only one they'll talk to,\" "
        f'{cap.they} said. "Don\'t ask me why. Just go."',
        f"I had never spoken to anything that wasn't human {rng.choice(ASIDES)}. "
        f"My hands were shaking, and I'm not ashamed to say it.",
        f"The envoy of {alien} was smaller than I'd expected. It looked at me for a long time. "
        f'Then it said, "We have been waiting. You are late."',
        f"It turned out that {odd}. The xenolinguists had spent three years on the wrong "
        f"problem. I'd spent three weeks on the right one by accident.",
        "We talked for nine hours. I can't tell you everything we said, but I can tell you "
        "that they laughed, and that it sounded like wind chimes in a storm.",
        f'"Will they come back?" {cap.name} asked afterwards. I didn\'t know. '
        f"I still don't. But they left a gift in the airlock, and it was warm.",
    ]
    ending = rng.choice(
        [
            f"Now {ship} is famous, and I'm still {job}. I wouldn't have it any other way.",
            f"Some nights I leave the comms open, just in case {alien} have something else "
            f"to say. They haven't yet. I'm patient.",
        ]
    )
    return prompt, [opening, *pick(rng, beats, rng.randint(2, 6)), ending]


def fantasy(rng: random.Random) -> tuple[str, list[str]]:
    creature, quest, item = rng.choice(CREATURES), rng.choice(QUESTS), rng.choice(ITEMS)
    hero = make_person(rng)
    friend = make_person(rng, avoid=hero.name)
    prompt = rng.choice(
        [
            f"The prophecy was wrong . The chosen one is a retired {creature} who just wants "
            f"to {quest} .",
            f"You are sent on a quest to {quest} . Your only help is {item} .",
            f"The {creature} you were sent to slay offers you tea instead . "
            f"It 's surprisingly good tea .",
        ]
    )
    opening = rng.choice(
        [
            f"{hero.name} had been told {hero.they} was the chosen one, which was news to "
            f"{hero.them}. {hero.They}'d been a baker for eleven years.",
            f"The old {creature} lived at the top of the mountain, and {hero.name} had climbed "
            f"for three days to reach it. {hero.They} was {rng.choice(FEELINGS)}.",
        ]
    )
    beats = [
        f"\"You're here to {quest},\" said the {creature}. It wasn't a question. "
        f'"Everyone is, eventually."',
        f"{hero.name} had brought {item}, because the wizard had insisted. "
        f"The wizard hadn't said what it was for {rng.choice(ASIDES)}.",
        f"{friend.name} had come along too, mostly to complain. "
        f'"I\'d like it noted," {friend.they} said, "that I\'m against all of this."',
        "The road through the Ashwood was older than the kingdom. The trees leaned close, "
        "as if they were listening, and maybe they were.",
        f"At the river, the ferryman asked for a secret instead of a coin. {hero.name} told "
        f"{hero.them} one. It was the truest thing {hero.they}'d ever said out loud.",
        f'The {creature} poured tea into two chipped cups. "Sit," it said. '
        f'"Heroes always want to fight. Nobody ever wants to listen."',
    ]
    ending = rng.choice(
        [
            f"In the end {hero.name} didn't slay anything. {hero.They} went home with a recipe "
            f"and a friend, and the songs got it all wrong.",
            f"They say the {creature} still waits on the mountain. They say {hero.name} visits "
            f"every spring. They're right about both.",
        ]
    )
    return prompt, [opening, *pick(rng, beats, rng.randint(2, 6)), ending]


def horror(rng: random.Random) -> tuple[str, list[str]]:
    haunt, rule = rng.choice(HAUNTS), rng.choice(RULES)
    prompt = rng.choice(
        [
            f"Your new apartment comes with one rule : {rule} . Tonight , you forget .",
            f"For a week , {haunt} has been whispering your name . Tonight it says something "
            f"else .",
            f"The previous tenant left a note : `` {rule.capitalize()} . '' You laughed . "
            f"You 're not laughing now .",
        ]
    )
    opening = rng.choice(
        [
            f"The landlord had been very clear about one thing: {rule}. "
            f"I'd signed the lease anyway. The rent was cheap, and I was {rng.choice(FEELINGS)}.",
            f"It started with {haunt}. A click, then a breath, then nothing. "
            f"I told myself it was the pipes. I'm good at telling myself things.",
        ]
    )
    beats = [
        f"The first night, I heard it {rng.choice(TIMES)}. It said my name, softly, "
        f"the way my mother used to.",
        '"It\'s an old building," my sister said on the phone. "They all make noises." '
        "She didn't hear the pause before I answered. I did.",
        "I started keeping a list. Every sound, every time. By Friday the list was "
        "four pages long (I don't remember writing half of it).",
        "There was a stain on the ceiling in the shape of a hand. It hadn't been there "
        "when I moved in. It was bigger every morning.",
        "On the seventh night, I forgot the rule. I don't know how. "
        "I just forgot, the way you forget a dream.",
        f"The voice from {haunt} was patient. It didn't shout. "
        f'It only said, "Thank you. I\'ve been so cold."',
    ]
    ending = rng.choice(
        [
            "I moved out the next day. The new tenant seems nice. "
            "I didn't tell her about the rule. I don't know why.",
            "It's quiet now. The list is gone. Sometimes I say my own name in the dark, "
            "just to check that it's still mine.",
        ]
    )
    return prompt, [opening, *pick(rng, beats, rng.randint(2, 6)), ending]


def humor(rng: random.Random) -> tuple[str, list[str]]:
    power, complaint, me = rng.choice(MUNDANE_POWERS), rng.choice(COMPLAINTS), make_person(rng)
    boss = make_person(rng, avoid=me.name)
    prompt = rng.choice(
        [
            f"You wake up one day and discover you {power} , but {complaint} .",
            f"Everyone gets a superpower on their 18th birthday . You {power} .",
            f"You {power} . Your therapist is running out of ideas .",
        ]
    )
    opening = rng.choice(
        [
            f"On the morning of my eighteenth birthday, I discovered that I {power}. "
            f"My best friend got laser eyes. I'm not bitter.",
            f"My name is {me.name}, and I {power}. Please hold your applause {rng.choice(ASIDES)}.",
        ]
    )
    beats = [
        "The government sent a woman in a grey suit to assess me. She watched for ten "
        'minutes, wrote something down, and said, "Huh." That was the whole assessment.',
        f"The problem is that {complaint}. I've tried explaining this at parties. "
        f"People stop inviting you to parties.",
        f'My boss, {boss.name}, thinks it\'s a scam. "Prove it," {boss.they} said. '
        f"So I did, and now {boss.they}'s not allowed in that branch of IKEA anymore.",
        "I tried to join the local hero league. They put me on the waiting list, "
        "right after a man who can make soup slightly warmer.",
        "My mom is very supportive. She tells her friends I'm in consulting. "
        "She isn't technically wrong.",
        "There was one day it actually helped. I won't bore you with the details, but a "
        "cat, a fire alarm, and a very confused pigeon were involved.",
    ]
    ending = rng.choice(
        [
            "So no, I won't be saving the world. But I'll always know where the good "
            "sandwiches are, and honestly? That's enough.",
            "Anyway, that's my power. Laser eyes is still dating the guy who can fly. "
            "Good for them. I'm fine.",
        ]
    )
    return prompt, [opening, *pick(rng, beats, rng.randint(2, 6)), ending]


def everyday(rng: random.Random) -> tuple[str, list[str]]:
    errand, obj, me = rng.choice(ERRANDS), rng.choice(OBJECTS), make_person(rng)
    other = make_person(rng, avoid=me.name)
    prompt = rng.choice(
        [
            f"Write about someone {errand} , and the one thing they find there .",
            f"While {errand} , you find {obj} with your name on it .",
            f"Tell a quiet story about {errand} . Nothing supernatural , just people .",
        ]
    )
    opening = rng.choice(
        [
            f"{me.name} spent the whole of Saturday {errand}. It was the kind of job that "
            f"doesn't look hard until you're in the middle of it.",
            f"Nobody warns you how tired you get {errand}. {me.name} was "
            f"{rng.choice(FEELINGS)} by noon, and there was still so much to do.",
        ]
    )
    beats = [
        f"In the back of a drawer, {me.they} found {obj}. {me.They} didn't open it right away. "
        f"{me.They} made tea first, because that's what you do.",
        f'{other.name} came by around four. "You okay?" {other.they} asked. '
        f"\"I'm fine,\" {me.name} said, which wasn't true, and they both knew it.",
        f"The radio was playing something old. {me.name} didn't know the words, "
        f"but {me.they} hummed along anyway {rng.choice(ASIDES)}.",
        f"There was a note inside, in handwriting {me.they} almost recognised. "
        f"It only said: \"I'm proud of you. Don't forget to eat.\"",
        f"{me.name} sat on the floor for a long time. Outside, kids were playing football, "
        f"and somebody's dog wouldn't stop barking. Life, going on.",
        f'"We can finish tomorrow," {other.name} said. {me.name} nodded. '
        f"They'd finish tomorrow, or the day after. It didn't matter.",
    ]
    ending = rng.choice(
        [
            f"That night {me.name} kept {obj} on the kitchen table, where {me.they} could see "
            f"it. It wasn't much. It was enough.",
            f"Years later, {me.name} would forget most of that day. "
            f"{me.They}'d never forget the note.",
        ]
    )
    return prompt, [opening, *pick(rng, beats, rng.randint(2, 6)), ending]


GENRES: list[Callable[[random.Random], tuple[str, list[str]]]] = [
    science_fiction,
    fantasy,
    horror,
    humor,
    everyday,
]


def ptb(text: str) -> str:
    """PTB-tokenize prose sentence by sentence, as the archive is: quotes as `` and ''."""
    tokenizer = TreebankWordTokenizer()
    return " ".join(" ".join(tokenizer.tokenize(s)) for s in split_sentences(text))


def make_tag(rng: random.Random) -> str:
    return f"[ {rng.choice(TAGS)} ]"


def make_pair(rng: random.Random) -> tuple[str, str]:
    """One (prompt, story) line pair; prompt bodies are written already tokenized."""
    while True:
        prompt, paragraphs = rng.choice(GENRES)(rng)
        words = sum(len(p.split()) for p in paragraphs)
        if MIN_WORDS <= words <= MAX_WORDS and MIN_PARAGRAPHS <= len(paragraphs) <= MAX_PARAGRAPHS:
            break
    story = ptb(paragraphs[0])
    for paragraph in paragraphs[1:]:
        story += rng.choice([" <newline> <newline> "] * 4 + [" <newline> "])
        story += ptb(paragraph)
    return f"{make_tag(rng)} {prompt}", story


def make_pairs(rng: random.Random, n: int, seen: set[str]) -> list[tuple[str, str]]:
    """`n` pairs whose prompts and stories were not produced before (across all splits)."""
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:
        prompt, story = make_pair(rng)
        if prompt not in seen and story not in seen:
            seen.update((prompt, story))
            pairs.append((prompt, story))
    return pairs


def write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="folder to write the {train,valid,test}.wp_source/.wp_target files into",
    )
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    rng = random.Random(SEED)
    seen: set[str] = set()
    for split, count in SPLITS.items():
        pairs = make_pairs(rng, count, seen)
        write_lines(args.out_dir / f"{split}.wp_source", [prompt for prompt, _ in pairs])
        write_lines(args.out_dir / f"{split}.wp_target", [story for _, story in pairs])
        print(f"wrote {count} pairs to {args.out_dir / split}.wp_source/.wp_target")


if __name__ == "__main__":
    main()
