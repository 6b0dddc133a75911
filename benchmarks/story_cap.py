"""What the reference-sized story cap costs the quickstart: its story metrics' generation at
the old fixed cap vs the default cap (the prompt set's longest reference + EOS, within
data.max_length and the context).

    python benchmarks/story_cap.py [--old-cap 64] [--repeats 1]

Composes `experiment=quickstart` from conf/, builds its data (bundled sample) and its model
with random weights, and runs the test stage's own `generate_and_score` on the validation
prompts (`num_prompts`, run at each of the quickstart's validations) and the test prompts
(`num_test_prompts`, once). A random model almost never stops by itself, so every batch runs
to its cap: the figures are the upper bound of a trained quickstart's cost (a trained model
that ends stories with EOS stops its batch sooner). Prints caps, tokens generated, median
seconds and the ratio new / old for the whole quickstart run (validations + test).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from dataclasses import replace

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from storygen.environment.resolvers import CONF_DIR, setup_environment
from storygen.metrics.scoring import generate_and_score


def timed(run, repeats: int) -> tuple[float, dict]:
    times, metrics = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        _, metrics = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-cap", type=int, default=64, help="the quickstart's cap before")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    setup_environment()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "experiment=quickstart",
                "data.cache_dir=null",
                "callbacks.story_metrics.generations_dir=null",
            ],
        )
    torch.manual_seed(cfg.seed)
    tokenizer = instantiate(cfg.model.tokenizer)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    model = instantiate(cfg.model, tokenizer=tokenizer)
    callback = instantiate(cfg.callbacks.story_metrics)
    validations = cfg.trainer.max_epochs  # one validation per epoch in the quickstart

    print(f"{'stage':<6}{'prompts':>8}{'cap':>6}{'tokens':>8}{'seconds':>9}  (cap {args.old_cap})")
    totals = {"old": 0.0, "new": 0.0}
    for stage, split, runs in (("val", "validation", validations), ("test", "test", 1)):
        prompts = datamodule.story_prompts(split, callback.num_prompts[stage])
        for label, settings in (
            ("old", replace(callback.generation, max_new_tokens=args.old_cap)),
            ("new", callback.generation),
        ):
            seconds, metrics = timed(
                lambda settings=settings, prompts=prompts: generate_and_score(
                    model.backbone,
                    tokenizer,
                    prompts,
                    settings,
                    max_length=datamodule.story_format.max_length,
                    batch_size=callback.batch_size,
                    seed=callback.seed,
                ),
                args.repeats,
            )
            tokens = metrics["gen_tokens"] * len(prompts)
            totals[label] += seconds * runs
            print(
                f"{stage:<6}{len(prompts):>8}{metrics['gen_cap']:>6.0f}{tokens:>8.0f}"
                f"{seconds:>9.2f}  {label}, truncated {metrics['gen_truncated']:.2f}, "
                f"ref median {metrics['ref_len_median']:.0f} words, x{runs} in the quickstart"
            )
    print(
        f"quickstart story-metrics generation: old {totals['old']:.1f} s, new "
        f"{totals['new']:.1f} s, ratio {totals['new'] / totals['old']:.2f}x "
        f"(torch threads {torch.get_num_threads()})"
    )


if __name__ == "__main__":
    main()
