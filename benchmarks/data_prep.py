"""Data preparation: first run (read, split, tokenize) vs the cached second run.

    python benchmarks/data_prep.py [--stories 20000] [--repeats 3]

Writes a TinyStories-format .txt of N stories (the bundled sample, repeated with numbered
names), prepares it twice through StoryDataModule with a fresh cache each repeat, and
prints medians and the ratio (the target is >= 10x). Also compares tokenizing alone against
a raw batched fast-tokenizer encode of the same texts (target >= 0.8), for whole stories and
for masked prompts (which ask the tokenizer for character offsets).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from storygen.data.datamodule import StoryDataModule
from storygen.data.formatting import StoryFormat, tokenize_stories
from storygen.data.tinystories import SAMPLE_FILES, TinyStoriesCorpus, read_stories_txt
from storygen.models.loader import build_offline_gpt2_tokenizer


def write_corpus(path: Path, count: int) -> None:
    sample = read_stories_txt(SAMPLE_FILES["train"])
    stories = [f"{sample[i % len(sample)]} (#{i})" for i in range(count)]
    path.write_text("".join(f"{story}\n<|endoftext|>\n" for story in stories), encoding="utf-8")


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    tokenizer = build_offline_gpt2_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        train, valid = Path(tmp) / "train.txt", Path(tmp) / "valid.txt"
        write_corpus(train, args.stories)
        write_corpus(valid, max(10, args.stories // 100))
        corpus = TinyStoriesCorpus(
            source="files", train_file=str(train), validation_file=str(valid)
        )

        firsts, seconds = [], []
        for repeat in range(args.repeats):
            cache = Path(tmp) / f"cache{repeat}"
            firsts.append(
                timed(lambda c=cache: StoryDataModule(corpus, tokenizer, cache_dir=str(c)).setup())
            )
            seconds.append(
                timed(lambda c=cache: StoryDataModule(corpus, tokenizer, cache_dir=str(c)).setup())
            )
        stories = corpus.load()["train"]

    batch = {"prompt": list(stories["prompt"]), "story": list(stories["story"])}
    texts = [p + s for p, s in zip(batch["prompt"], batch["story"])]
    fmt = StoryFormat(max_length=512)
    ours = statistics.median(
        timed(lambda: tokenize_stories(batch, tokenizer, fmt)) for _ in range(args.repeats)
    )
    raw = statistics.median(
        timed(lambda: tokenizer(texts)["input_ids"]) for _ in range(args.repeats)
    )
    masked_fmt = StoryFormat("Prompt: {prompt}\nStory:\n", train_on_prompt=False, max_length=512)
    masked = statistics.median(
        timed(lambda: tokenize_stories(batch, tokenizer, masked_fmt)) for _ in range(args.repeats)
    )

    first, second = statistics.median(firsts), statistics.median(seconds)
    print(f"stories: {args.stories:,}")
    print(f"{'preparation':<34}{'median s':>10}")
    print(f"{'first run (read, split, tokenize)':<34}{first:>10.2f}")
    print(f"{'second run (cached)':<34}{second:>10.2f}")
    print(f"cache speed-up: {first / second:.1f}x  [target >= 10x]")
    print(
        f"tokenize_stories {ours:.2f}s vs raw batched encode {raw:.2f}s: "
        f"throughput ratio {raw / ours:.2f}  [target >= 0.8]"
    )
    print(
        f"masked prompts (offsets) {masked:.2f}s vs raw batched encode {raw:.2f}s: "
        f"throughput ratio {raw / masked:.2f}"
    )


if __name__ == "__main__":
    main()
