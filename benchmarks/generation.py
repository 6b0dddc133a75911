"""Batched vs one-prompt-at-a-time story generation, on the CPU, same model and prompts.

    python benchmarks/generation.py [--prompts 16] [--new-tokens 64] [--repeats 3]

Prints the median wall time of each and their ratio (the target is >= 5x), and the cost of
one validation's generation with the default callback settings.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import AutoModelForCausalLM, GPT2Config

from storygen.data.sentences import split_opening
from storygen.data.tinystories import SAMPLE_FILES, read_stories_txt
from storygen.models.generation import GenerationSettings, generate_stories
from storygen.models.loader import build_offline_gpt2_tokenizer


def median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.manual_seed(0)
    tokenizer = build_offline_gpt2_tokenizer()
    # the tiny GPT-2 of conf/model/gpt2_tiny.yaml
    model = AutoModelForCausalLM.from_config(
        GPT2Config(vocab_size=50257, n_positions=256, n_embd=64, n_layer=2, n_head=2)
    ).eval()
    stories = read_stories_txt(SAMPLE_FILES["validation"])[: args.prompts]
    prompts = [split_opening(story)[0] for story in stories]
    # greedy and never stopping early, so both sides generate exactly the same tokens
    settings = GenerationSettings(
        max_new_tokens=args.new_tokens, do_sample=False, temperature=1.0, top_p=1.0, top_k=0
    )
    model.generation_config.min_new_tokens = args.new_tokens

    batched = median_seconds(
        lambda: generate_stories(model, tokenizer, prompts, settings, batch_size=len(prompts)),
        args.repeats,
    )
    one_by_one = median_seconds(
        lambda: generate_stories(model, tokenizer, prompts, settings, batch_size=1), args.repeats
    )
    tokens = args.prompts * args.new_tokens
    print(f"{'mode':<16}{'median s':>10}{'tokens/s':>12}")
    print(f"{'batched':<16}{batched:>10.3f}{tokens / batched:>12.0f}")
    print(f"{'one at a time':<16}{one_by_one:>10.3f}{tokens / one_by_one:>12.0f}")
    print(f"speed-up (batched / one at a time): {one_by_one / batched:.1f}x  [target >= 5x]")
    print(f"torch threads: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
