"""Where a training step's time goes: LM head + loss, the blocks, the optimizer, the loop.

    python benchmarks/step_profile.py [override ...] [--steps 4] [--warmup-steps 2] [--repeats 3]
    python benchmarks/step_profile.py experiment=quickstart          # the default
    python benchmarks/step_profile.py model=gpt2_tiny data.batch_size=8 data.max_length=128

(Not `profile.py`: that name would shadow the standard library's `profile`, which torch
imports through cProfile.)

For the config the overrides compose (as `python -m storygen.train` would, without
validation, checkpoints or W&B), on the same first batches of its train loader:

- the loop: storygen's own fit (StoryLM in the Lightning Trainer, CSV logging, the default
  callbacks but the checkpoint writers and story metrics), seconds per step after warm-up;
- the parts, timed one by one on the same model and batches: the blocks (the decoder stack
  forward and backward), the LM head + loss (forward and backward from the last hidden
  state: the head matmuls, log-softmax, their gradients), the optimizer (gradient clipping,
  AdamW, the schedule, zero_grad);
- the loop's own overhead: the loop's step minus the three parts (Lightning's hooks,
  logging, callbacks, moving batches).

The two alternate `--repeats` times (medians printed), and tokens/s and GFLOP/s are set
against the fp32 matmul peak measured in the same run (before and after). This process runs
under tcmalloc, as storygen's entry points do (storygen/environment/allocator.py);
`STORYGEN_ALLOCATOR=system` profiles glibc's malloc instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __name__ == "__main__":  # as storygen's entry points: tcmalloc, before torch is imported
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from storygen.environment.allocator import preload_fast_allocator

    preload_fast_allocator()

import datasets
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from benchmarks.train_throughput import (
    DROPPED_CALLBACKS,
    build_backbone_and_optimizer,
    matmul_gflops,
    run_storygen,
    training_flops_per_token,
)
from storygen.environment.resolvers import CONF_DIR, setup_environment
from storygen.models.fused_loss import split_backbone

PARTS = ("LM head + loss", "blocks", "optimizer")


def compose_config(overrides: list[str], steps: int, output_dir: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                *overrides,
                "data.cache_dir=null",
                "data.num_workers=0",
                f"++trainer.max_steps={steps}",
                "trainer.enable_progress_bar=false",
                "++trainer.enable_checkpointing=false",
                "++trainer.limit_val_batches=0",
                "logger=csv",
            ],
        )
    with open_dict(cfg):
        cfg.paths.root_dir = cfg.paths.output_dir = output_dir
        for name in DROPPED_CALLBACKS:
            cfg.callbacks.pop(name, None)
    return cfg


def time_parts(cfg: DictConfig, batches: list[dict], warmup: int) -> list[dict[str, float]]:
    """Seconds of each part of each step after the warm-up, the model trained as the loop does."""
    backbone, optimizer, scheduler = build_backbone_and_optimizer(cfg, len(batches))
    backbone.train()
    body, head = split_backbone(backbone)
    clip = cfg.trainer.gradient_clip_val
    steps = []
    for batch in batches:
        labels = batch["labels"]
        inputs = {k: v for k, v in batch.items() if k != "labels"} | {"use_cache": False}
        if "position_ids" in inputs:  # packed rows: as StoryLM's model_inputs
            inputs.pop("attention_mask", None)
        start = time.perf_counter()
        hidden = body(**inputs).last_hidden_state
        forward_done = time.perf_counter()
        last = hidden.detach().requires_grad_()
        loss = backbone.loss_function(head(last), labels, backbone.config.vocab_size)
        loss.backward()
        head_done = time.perf_counter()
        hidden.backward(last.grad)
        blocks_done = time.perf_counter()
        if clip:
            torch.nn.utils.clip_grad_norm_(backbone.parameters(), clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        steps.append(
            {
                "LM head + loss": head_done - forward_done,
                "blocks": (forward_done - start) + (blocks_done - head_done),
                "optimizer": end - blocks_done,
            }
        )
    return steps[warmup:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="*", default=["experiment=quickstart"])
    parser.add_argument("--steps", type=int, default=4, help="timed steps per run")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    assert args.warmup_steps >= 1, "the first step is always warm-up"

    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    for message in ("does not have many workers", "loss_type=None", "exists and is not empty"):
        warnings.filterwarnings("ignore", f".*{message}.*")
    datasets.disable_progress_bars()
    setup_environment()

    total = args.warmup_steps + args.steps
    with tempfile.TemporaryDirectory(prefix="storygen-profile-") as tmp:
        cfg = compose_config(args.overrides, total, tmp)
        tokenizer = instantiate(cfg.model.tokenizer)
        datamodule = instantiate(cfg.data, tokenizer=tokenizer)
        datamodule.setup()
        batches = [batch for _, batch in zip(range(total), datamodule.train_dataloader())]
        assert len(batches) == total, "fewer batches in an epoch than steps: lower --steps"
        timed = batches[args.warmup_steps :]
        tokens = sum(b["input_ids"].numel() for b in timed)
        backbone = instantiate(cfg.model.backbone)
        flops = sum(
            b["input_ids"].numel() * training_flops_per_token(backbone, b["input_ids"].shape[1])
            for b in timed
        )

        load_before = os.getloadavg()[0]
        peaks = [matmul_gflops()]
        loop_steps: list[float] = []
        part_steps: list[dict[str, float]] = []
        for _ in range(args.repeats):  # alternate, so a busy spell hits both
            seconds, _ = run_storygen(cfg, datamodule, tokenizer, args.warmup_steps)
            loop_steps += seconds
            part_steps += time_parts(cfg, batches, args.warmup_steps)
        peaks.append(matmul_gflops())
        load_after = os.getloadavg()[0]

    peak = statistics.median(peaks)
    loop = statistics.median(loop_steps)
    parts = {name: statistics.median(step[name] for step in part_steps) for name in PARTS}
    shape = timed[0]["input_ids"].shape
    rate = tokens / args.steps / loop
    gflops = flops / args.steps / loop / 1e9
    print(
        f"{' '.join(args.overrides)}: batch {shape[0]} x ~{shape[1]} tokens, "
        f"{torch.get_num_threads()} threads, {args.steps} timed steps after {args.warmup_steps} "
        f"warm-up, {args.repeats} repeats; allocator "
        f"{os.environ.get('STORYGEN_PRELOADED_ALLOCATOR', 'glibc malloc')}; "
        f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"{'part':<18}{'s/step':>8}{'share':>8}")
    for name, seconds in parts.items():
        print(f"{name:<18}{seconds:>8.3f}{seconds / loop:>8.1%}")
    overhead = loop - sum(parts.values())
    print(f"{'loop overhead':<18}{overhead:>8.3f}{overhead / loop:>8.1%}")
    print(f"{'step (the loop)':<18}{loop:>8.3f}{1:>8.0%}")
    print(
        f"{rate:,.0f} tokens/s, {gflops:.1f} GFLOP/s = {gflops / peak:.1%} of the fp32 matmul "
        f"peak ({peak:.0f} GFLOP/s, measured before and after)"
    )


if __name__ == "__main__":
    main()
