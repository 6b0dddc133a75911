"""Packing: share of non-pad tokens and effective training tokens/s, with and without it.

    python benchmarks/packing.py [--max-length 512] [--batch-size 8] [--steps 5] [--repeats 3]

Two corpora: the bundled TinyStories sample (stories of 108-170 tokens, a narrow spread) and
a wider TinyStories-like spread made by joining 1-4 sample stories (108-680 tokens, like the
real dataset's long tail). For each layout (one story per row, length-grouped, packed whole
stories, packed run-on) it prints the share of non-pad tokens over an epoch of batches and
the story tokens per second of a tiny GPT-2 training on them (fp32, CPU), as medians over
repeats. Target: >= 0.97 non-pad with packing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import GPT2Config

from storygen.data.datamodule import StoryDataModule
from storygen.data.tinystories import SAMPLE_FILES, TinyStoriesCorpus, read_stories_txt
from storygen.models.loader import build_backbone, build_offline_gpt2_tokenizer
from storygen.models.module import model_inputs

LAYOUTS = {
    "one story per row": {},
    "grouped by length": {"group_by_length": True},
    "packed, whole stories": {"packing": True},
    "packed, run on": {"packing": True, "pack_whole_stories": False},
}


def write_wide_corpus(directory: Path, seed: int = 0) -> TinyStoriesCorpus:
    """Sample stories joined 1-4 at a time: lengths spread from one story to four."""
    rng = random.Random(seed)
    files = {}
    for split, path in SAMPLE_FILES.items():
        stories = read_stories_txt(path)
        joined = [" ".join(rng.sample(stories, rng.randint(1, 4))) for _ in stories]
        files[split] = directory / f"{split}.txt"
        files[split].write_text("".join(f"{s}\n<|endoftext|>\n" for s in joined))
    return TinyStoriesCorpus(
        source="files", train_file=str(files["train"]), validation_file=str(files["validation"])
    )


def non_pad_share(batches: list[dict[str, torch.Tensor]]) -> float:
    real = sum(int(batch["attention_mask"].sum()) for batch in batches)
    return real / sum(batch["input_ids"].numel() for batch in batches)


def story_tokens_per_second(batches: list[dict[str, torch.Tensor]], steps: int) -> float:
    """Train a tiny GPT-2 on the first `steps` batches: story (non-pad) tokens per second."""
    torch.manual_seed(0)
    model = build_backbone(
        architecture=GPT2Config(n_layer=2, n_embd=128, n_head=4, n_positions=1024)
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    chosen = batches[: steps + 1]
    start = None
    for index, batch in enumerate(chosen):
        if index == 1:  # the first step warms up allocators and kernels
            start = time.perf_counter()
        model(**model_inputs(batch)).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    elapsed = time.perf_counter() - start
    return sum(int(batch["attention_mask"].sum()) for batch in chosen[1:]) / elapsed


def measure(corpus: TinyStoriesCorpus, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    """Non-pad share and median tokens/s per layout; repeats interleave the layouts so that
    machine noise falls on all of them alike."""
    tokenizer = build_offline_gpt2_tokenizer()
    batches = {}
    for name, options in LAYOUTS.items():
        data = StoryDataModule(
            corpus,
            tokenizer,
            max_length=args.max_length,
            batch_size=args.batch_size,
            cache_dir=None,
            **options,
        )
        data.setup()
        batches[name] = list(data.train_dataloader())
    speeds = {name: [] for name in LAYOUTS}
    for _ in range(args.repeats):
        for name in LAYOUTS:
            speeds[name].append(story_tokens_per_second(batches[name], args.steps))
    return [
        (name, non_pad_share(batches[name]), statistics.median(speeds[name])) for name in LAYOUTS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        corpora = {
            "bundled sample (108-170 tokens)": TinyStoriesCorpus(source="sample"),
            "wide spread (108-680 tokens)": write_wide_corpus(Path(tmp)),
        }
        results = {name: measure(corpus, args) for name, corpus in corpora.items()}
    print(f"max_length {args.max_length}, batch {args.batch_size}, tiny GPT-2, fp32 CPU")
    for corpus_name, rows in results.items():
        baseline = rows[0][2]
        print(f"\n{corpus_name}")
        print(f"{'layout':<24}{'non-pad share':>15}{'story tokens/s':>16}{'vs one per row':>16}")
        for name, share, speed in rows:
            print(f"{name:<24}{share:>15.3f}{speed:>16,.0f}{speed / baseline:>15.2f}x")
    print("\ntarget: non-pad share >= 0.97 with packing")


if __name__ == "__main__":
    main()
