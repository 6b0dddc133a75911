"""Generate the bundled TinyStories-style sample corpus.

Writes ``TinyStoriesV2-sample-train.txt`` (360 stories) and
``TinyStoriesV2-sample-valid.txt`` (60 stories) into ``storygen/samples/tinystories/``, the
bundled data the package ships (or into ``--out-dir``). The files use the TinyStories V2 ``.txt``
layout: each story is plain text followed by a line holding exactly
``<|endoftext|>``.

The stories are written from scratch by small plot templates filled from word
pools; no text comes from the real TinyStories dataset. The corpus exists so
the quickstart and the test suite can run fully offline. Generation is seeded,
so rerunning the script reproduces byte-identical files.

Usage::

    python tools/make_tinystories_sample.py [--out-dir DIR]
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

COLORS = ["red", "blue", "green", "yellow", "purple"]
SEED = 20240611
N_TRAIN = 360
N_VALID = 60
MIN_WORDS, MAX_WORDS = 60, 160
SEPARATOR = "<|endoftext|>"
DEFAULT_OUT_DIR = Path(__file__).resolve().parents[1] / "storygen" / "samples" / "tinystories"

GIRLS = ["Lily", "Mia", "Sara", "Emma", "Zoe", "Anna", "Lucy", "Ruby", "Ella", "Nora", "Maya"]
BOYS = ["Tom", "Ben", "Max", "Sam", "Leo", "Jack", "Tim", "Finn", "Noah", "Eli", "Omar"]
ANIMALS = [
    "bunny",
    "puppy",
    "kitten",
    "duck",
    "mouse",
    "bear",
    "fox",
    "frog",
    "turtle",
    "bird",
    "squirrel",
    "pig",
]
TOYS = [
    "red ball",
    "teddy bear",
    "toy car",
    "blue kite",
    "little doll",
    "wooden train",
    "yellow boat",
    "soft dinosaur",
]
PLACES = [
    "under the bed",
    "behind the sofa",
    "in the garden",
    "under a big leaf",
    "in the toy box",
    "next to the door",
]
ADJ = ["happy", "kind", "curious", "brave", "cheerful", "gentle", "playful", "clever"]
TREATS = ["cookies", "a cake", "muffins", "bread", "a pie", "cupcakes"]
FRUITS = ["apples", "berries", "bananas", "cherries", "carrots", "pears"]
SKILLS = [
    ("ride a bike", "wobbled and fell down", "rode all the way down the path"),
    ("tie shoes", "made a messy knot", "tied a neat bow"),
    ("swim", "splashed and sank a little", "swam across the small pool"),
    ("read a book", "mixed up the words", "read a whole page out loud"),
    ("jump rope", "tripped on the rope", "jumped ten times in a row"),
    ("whistle", "only blew air", "made a loud, happy whistle"),
]
FEELINGS_SAD = ["sad", "upset", "worried", "grumpy"]
FEELINGS_GLAD = ["happy", "proud", "glad", "excited"]
PARK_THINGS = ["the swings", "the slide", "the sandbox", "the pond", "the big tree"]
PETS = ["puppy", "kitten", "dog", "cat", "bunny"]
WEATHER = [
    ("rain", "it was raining hard"),
    ("snow", "snow was falling fast"),
    ("wind", "a strong wind was blowing"),
]


@dataclass
class Hero:
    name: str
    he: str
    him: str
    his: str
    kind: str  # "girl" or "boy"
    adj: str

    @property
    def He(self) -> str:
        return self.he.capitalize()

    @property
    def His(self) -> str:
        return self.his.capitalize()


def make_hero(rng: random.Random) -> Hero:
    if rng.random() < 0.5:
        return Hero(rng.choice(GIRLS), "she", "her", "her", "girl", rng.choice(ADJ))
    return Hero(rng.choice(BOYS), "he", "him", "his", "boy", rng.choice(ADJ))


def an(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def opening(rng: random.Random, h: Hero) -> str:
    return rng.choice(
        [
            f"Once upon a time, there was a little {h.kind} named {h.name}.",
            f"Once upon a time, there was {an(h.adj)} {h.kind} named {h.name}.",
            f"{h.name} was {an(h.adj)} little {h.kind} who lived in a small town.",
            f"There was once {an(h.adj)} {h.kind} called {h.name}.",
        ]
    )


def lost_toy(rng: random.Random, h: Hero) -> list[str]:
    toy, place, pet = rng.choice(TOYS), rng.choice(PLACES), rng.choice(PETS)
    return [
        f"{opening(rng, h)} {h.He} had a {toy} that {h.he} loved very much. "
        f"{h.He} played with it every day.",
        f"One morning, the {toy} was gone. {h.name} looked on the table and in the kitchen. "
        f"{h.He} felt {rng.choice(FEELINGS_SAD)}. "
        f'"Where did my {toy.split()[-1]} go?" {h.he} asked.',
        f"Then {h.his} {pet} came running. It tugged at {h.his} sleeve. "
        f"{h.name} followed it, and there was the {toy}, {place}!",
        f"{h.name} hugged the {toy} and gave the {pet} a big pat. "
        f'"Thank you, friend," {h.he} said. '
        f"From that day on, {h.he} always put {h.his} toys away.",
    ]


def new_friend(rng: random.Random, h: Hero) -> list[str]:
    friend = make_hero(rng)
    while friend.name == h.name:
        friend = make_hero(rng)
    thing = rng.choice(PARK_THINGS)
    return [
        f"{opening(rng, h)} {h.He} lived in a small house near a big park.",
        f"One day, {h.he} saw a new {friend.kind} sitting alone by {thing}. "
        f"The {friend.kind} looked shy and a little {rng.choice(FEELINGS_SAD)}.",
        f"{h.name} walked over and smiled. "
        f'"Hi, I am {h.name}. Do you want to play with me?" {h.he} asked. '
        f'The {friend.kind} smiled back. "My name is {friend.name}. Yes, please!"',
        f"They played together until the sun went down. They laughed and ran and shared a snack. "
        f'When it was time to go home, {friend.name} said, "You are my best friend." '
        f"{h.name} felt warm and {rng.choice(FEELINGS_GLAD)} inside.",
    ]


def rainy_day(rng: random.Random, h: Hero) -> list[str]:
    (weather, sky), toy = rng.choice(WEATHER), rng.choice(TOYS)
    game = rng.choice(
        [
            "built a fort with pillows",
            "drew pictures of animals",
            "made a puppet show",
            "played a game of hide and seek",
        ]
    )
    return [
        f"{opening(rng, h)} {h.He} wanted to play outside with {h.his} {toy}.",
        f"But when {h.he} looked out the window, {sky}. "
        f'{h.name} frowned. "Now I cannot go out," {h.he} said.',
        f'{h.His} mom sat down next to {h.him}. "We can have fun inside too," she said. '
        f"So they {game}. They played all afternoon.",
        f"Soon {h.name} was laughing. {h.He} forgot all about the {weather}. "
        f'"Inside days are fun too," {h.he} said, and {h.he} gave {h.his} mom a big hug.',
    ]


def baking(rng: random.Random, h: Hero) -> list[str]:
    treat = rng.choice(TREATS)
    it = "it" if treat.startswith("a ") or treat == "bread" else "them"
    helper = rng.choice(["grandma", "dad", "mom", "grandpa"])
    share = rng.choice(
        ["the neighbors", "the whole family", "a friend next door", "the kind mail carrier"]
    )
    return [
        f"{opening(rng, h)} Today, {h.he} wanted to bake {treat} with {h.his} {helper}.",
        f"They put flour, milk, and eggs in a big bowl. {h.name} stirred and stirred. "
        f"Some flour went on {h.his} nose, and {h.he} giggled.",
        f"They put the bowl in the oven and waited. The kitchen smelled sweet and warm. "
        f'"Is it ready yet?" {h.name} asked again and again.',
        f"At last the {treat.split()[-1]} came out, soft and golden. "
        f"{h.name} shared {it} with {share}. "
        f"Everyone smiled, and {h.name} felt very {rng.choice(FEELINGS_GLAD)}.",
    ]


def park_trip(rng: random.Random, h: Hero) -> list[str]:
    first, second = rng.sample(PARK_THINGS, 2)
    animal = rng.choice(ANIMALS)
    return [
        f"{opening(rng, h)} On a sunny day, {h.his} dad took {h.him} to the park.",
        f"First, {h.name} ran to {first}. {h.He} played there for a long time. "
        f"Then {h.he} went to {second} and laughed out loud.",
        f"Near the path, {h.he} saw a little {animal}. It looked hungry. "
        f"{h.name} gave it a piece of {h.his} bread. The {animal} ate it and seemed to smile.",
        f'When the sun got low, it was time to go. "Can we come back tomorrow?" {h.name} asked. '
        f'"Yes," said Dad. {h.name} waved goodbye to the {animal} all the way home.',
    ]


def brave_animal(rng: random.Random, h: Hero) -> list[str]:
    animal, big = rng.sample(ANIMALS, 2)
    name = rng.choice(["Pip", "Dot", "Bun", "Tiny", "Mo", "Bea", "Nib", "Tuft"])
    return [
        f"Once upon a time, there was a small {animal} named {name}. "
        f"{name} lived in a cozy hole near a river.",
        f"{name} was very little, and {name} was often scared. "
        f"But {name} had a good friend, a big {big}, who lived across the river.",
        f'One day, the {big} got stuck in a muddy hole. "Help!" it cried. '
        f"The other animals were afraid to go near. {name} took a deep breath and ran to help.",
        f"{name} found a long stick and pushed it to the {big}. The {big} held on and climbed out. "
        f'"You are so brave," said the {big}. '
        f"{name} felt tall and strong, even though {name} was still small.",
    ]


def sharing(rng: random.Random, h: Hero) -> list[str]:
    fruit, toy = rng.choice(FRUITS), rng.choice(TOYS)
    sib = rng.choice(["little brother", "little sister", "cousin", "friend"])
    return [
        f"{opening(rng, h)} {h.He} had a basket full of {fruit} and a shiny {toy}.",
        f'{h.His} {sib} came over and looked at the {toy}. "Can I play with it?" '
        f'{h.name} held it tight. "No, it is mine," {h.he} said.',
        f"The {sib} looked sad and walked away. {h.name} did not feel good. "
        f"{h.He} thought about it for a while. Playing alone was not much fun.",
        f'So {h.name} went to find the {sib}. "Let\'s play together," {h.he} said, '
        f"and {h.he} shared the {toy} and the {fruit} too. They had the best day. "
        f"{h.name} learned that sharing makes everyone happy.",
    ]


def learning(rng: random.Random, h: Hero) -> list[str]:
    skill, fail, win = rng.choice(SKILLS)
    teacher = rng.choice(["big sister", "big brother", "dad", "mom", "grandpa"])
    return [
        f"{opening(rng, h)} {h.He} really wanted to learn to {skill}.",
        f"The first time {h.he} tried, {h.he} {fail}. {h.name} felt {rng.choice(FEELINGS_SAD)}. "
        f'"I can\'t do it," {h.he} said.',
        f'{h.His} {teacher} said, "Everyone starts somewhere. Try again, and go slow." '
        f"So {h.name} tried again, and again, and again.",
        f'On the fifth try, {h.name} {win}! "I did it!" {h.he} shouted. '
        f"{h.His} {teacher} clapped. {h.name} felt so {rng.choice(FEELINGS_GLAD)}, "
        f"and {h.he} practiced every day after that.",
    ]


def bedtime(rng: random.Random, h: Hero) -> list[str]:
    toy = rng.choice(TOYS)
    sound = rng.choice(["a tap, tap, tap", "a soft scratch", "a little squeak", "a loud creak"])
    cause = rng.choice(
        [
            ("a branch", "knocking on the window in the wind"),
            ("the cat", "playing with a ball of string"),
            ("the old clock", "ticking in the hall"),
        ]
    )
    return [
        f"{opening(rng, h)} One night, {h.he} could not fall asleep.",
        f"{h.He} heard {sound} in the dark. {h.name} pulled {h.his} blanket up to {h.his} nose. "
        f"{h.He} held {h.his} {toy} close.",
        f"{h.name} was scared, but {h.he} wanted to know what it was. {h.He} turned on the lamp "
        f"and looked. It was only {cause[0]}, {cause[1]}!",
        f'{h.name} laughed. "You scared me," {h.he} said. {h.He} turned off the lamp, '
        f"hugged {h.his} {toy}, and fell fast asleep.",
    ]


def garden(rng: random.Random, h: Hero) -> list[str]:
    plant = rng.choice(["sunflower", "tomato plant", "bean plant", "pumpkin", "rose bush"])
    return [
        f"{opening(rng, h)} {h.His} grandma gave {h.him} a tiny seed. "
        f'"Plant it and take care of it," she said.',
        f"{h.name} put the seed in the dirt and gave it water. The next day, nothing happened. "
        f"{h.He} was {rng.choice(FEELINGS_SAD)}, but {h.he} kept giving it water every day.",
        f"After many days, a small green leaf came out. Then another one. "
        f"The plant grew taller and taller, until it was a big {plant}.",
        f'{h.name} ran to show {h.his} grandma. "Look what I grew!" {h.he} said. '
        f'Grandma smiled. "Good things take time," she said. {h.name} knew she was right.',
    ]


TEMPLATES: list[Callable[[random.Random, Hero], list[str]]] = [
    lost_toy,
    new_friend,
    rainy_day,
    baking,
    park_trip,
    brave_animal,
    sharing,
    learning,
    bedtime,
    garden,
]


def hobby_line(rng: random.Random, h: Hero) -> str:
    return rng.choice(
        [
            f"{h.He} liked to sing songs and jump in puddles.",
            f"{h.He} loved to draw pictures of the sun and the moon.",
            f"Every day, {h.he} played with {h.his} {rng.choice(PETS)} in the yard.",
            f"{h.His} favorite color was {rng.choice(COLORS)}.",
            f"{h.He} always asked a lot of questions, because {h.he} wanted to know everything.",
        ]
    )


def closing_line(rng: random.Random, h: Hero) -> str:
    return rng.choice(
        [
            f"That night, {h.name} went to bed with a big smile.",
            f"It was one of the best days {h.name} ever had.",
            f"And {h.name} never forgot that day.",
            f"{h.name} told {h.his} family all about it at dinner.",
        ]
    )


def make_story(rng: random.Random) -> str:
    """Build one story; paragraphs are joined by single newlines."""
    while True:
        template, hero = rng.choice(TEMPLATES), make_hero(rng)
        paragraphs = template(rng, hero)
        if template is not brave_animal:  # the animal story has no human hero to describe
            if rng.random() < 0.5:
                paragraphs[0] += " " + hobby_line(rng, hero)
            if rng.random() < 0.4:
                paragraphs[-1] += " " + closing_line(rng, hero)
        if rng.random() < 0.3:  # sometimes flatten to one paragraph, as in the real corpus
            paragraphs = [" ".join(paragraphs)]
        story = "\n".join(paragraphs)
        if MIN_WORDS <= len(story.split()) <= MAX_WORDS:
            return story


def make_stories(rng: random.Random, n: int, seen: set[str]) -> list[str]:
    stories: list[str] = []
    while len(stories) < n:
        story = make_story(rng)
        if story not in seen:
            seen.add(story)
            stories.append(story)
    return stories


def write_split(path: Path, stories: list[str]) -> None:
    text = "".join(f"{story}\n{SEPARATOR}\n" for story in stories)
    path.write_text(text, encoding="utf-8", newline="\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="folder to write the two .txt files into",
    )
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)

    rng = random.Random(SEED)
    seen: set[str] = set()
    train = make_stories(rng, N_TRAIN, seen)
    valid = make_stories(rng, N_VALID, seen)
    for split, stories in (("train", train), ("valid", valid)):
        path = args.out_dir / f"TinyStoriesV2-sample-{split}.txt"
        write_split(path, stories)
        print(f"wrote {len(stories)} stories to {path}")


if __name__ == "__main__":
    main()
