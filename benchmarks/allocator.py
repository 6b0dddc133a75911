"""CPU allocator: the same training step under glibc's malloc and under tcmalloc, side by side.

    python benchmarks/allocator.py [--repeats 3] [--steps 4] [--warmup-steps 2]
        [--layers 2] [--width 128] [--batch-size 16] [--max-length 256]

Each run is a fresh child process (LD_PRELOAD acts only at process start) training the
quickstart's model (GPT-2 2 x 128, vocab 50,257, random init from one seed, fp32) with AdamW
on the same random batches of 16 x 256 tokens; the children alternate glibc / tcmalloc
`--repeats` times, so a busy spell on a shared machine hits both. Printed per allocator, per
timed step: median wall seconds, CPU seconds (user + system, all threads: less disturbed by
other processes than wall time), kernel (system) seconds and minor page faults (each child's
rusage); the last loss (identical: the same work); and the ratio glibc / tcmalloc of wall
seconds per step. tcmalloc is what storygen's entry points preload
(storygen/environment/allocator.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storygen.environment.allocator import ENV_VAR, PRELOADED_VAR, find_tcmalloc  # noqa: E402


def child(args: argparse.Namespace) -> None:
    """Train and print {"seconds": [...], "loss": x, "minflt": n, "stime": s} for timed steps."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(
        vocab_size=50257,
        n_positions=args.max_length,
        n_embd=args.width,
        n_layer=args.layers,
        n_head=max(1, args.width // 32),
    )
    model = GPT2LMHeadModel(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(1)
    batches = [
        torch.randint(0, 50257, (args.batch_size, args.max_length), generator=generator)
        for _ in range(args.warmup_steps + args.steps)
    ]
    seconds = []
    for step, ids in enumerate(batches):
        if step == args.warmup_steps:
            usage = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        seconds.append(time.perf_counter() - start)
    end = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "seconds": seconds[args.warmup_steps :],
                "loss": float(loss),
                "minflt": end.ru_minflt - usage.ru_minflt,
                "stime": end.ru_stime - usage.ru_stime,
                "cpu": end.ru_utime + end.ru_stime - usage.ru_utime - usage.ru_stime,
                "tcmalloc": "tcmalloc" in Path("/proc/self/maps").read_text(),
            }
        )
    )


def run_child(args: argparse.Namespace, preload: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", PRELOADED_VAR)}
    env[ENV_VAR] = "system"  # this script preloads by hand; nothing else should
    if preload:
        env["LD_PRELOAD"] = preload
    command = [sys.executable, __file__, "--child", *sys.argv[1:]]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"child failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per child")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    tcmalloc = find_tcmalloc()
    if tcmalloc is None:
        raise SystemExit("error: tcmalloc is not installed: apt-get install libtcmalloc-minimal4")
    sides = {"glibc malloc": None, "tcmalloc": tcmalloc}
    runs: dict[str, list[dict]] = {name: [] for name in sides}
    load_before = os.getloadavg()[0]
    for _ in range(args.repeats):  # alternate, so a busy spell hits both sides
        for name, preload in sides.items():
            runs[name].append(run_child(args, preload))
    load_after = os.getloadavg()[0]
    assert not any(r["tcmalloc"] for r in runs["glibc malloc"])
    assert all(r["tcmalloc"] for r in runs["tcmalloc"])

    print(
        f"GPT-2 {args.layers} x {args.width}, vocab 50,257, batch {args.batch_size} x "
        f"{args.max_length}, fp32, AdamW; {args.steps} timed steps after {args.warmup_steps} "
        f"warm-up per child, {args.repeats} children per side, alternating; "
        f"load average {load_before:.1f} -> {load_after:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'allocator':<14}{'s/step':>8}{'CPU s/step':>12}{'sys s/step':>12}"
        f"{'minor faults/step':>19}{'loss':>9}"
    )
    per_step = {}
    for name, results in runs.items():
        per_step[name] = statistics.median(s for r in results for s in r["seconds"])
        faults = statistics.median(r["minflt"] / args.steps for r in results)
        system = statistics.median(r["stime"] / args.steps for r in results)
        cpu = statistics.median(r["cpu"] / args.steps for r in results)
        print(
            f"{name:<14}{per_step[name]:>8.2f}{cpu:>12.2f}{system:>12.2f}{faults:>19,.0f}"
            f"{results[-1]['loss']:>9.4f}"
        )
    ratio = per_step["glibc malloc"] / per_step["tcmalloc"]
    print(f"glibc / tcmalloc seconds per step: {ratio:.2f}x  ({tcmalloc})")


if __name__ == "__main__":
    main()
