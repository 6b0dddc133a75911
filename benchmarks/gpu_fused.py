"""model.fused_loss=liger|cce on a GPU: each kernel's loss and gradients against the plain loss
on the same weights and batch, then GPT-2 small's fine-tuning tokens/s and peak memory with
each, the plain loss timed in the same process.

    python benchmarks/gpu_fused.py --jsonl $OUT/1_results.jsonl   # benchmarks/gpu_check.sh
    python benchmarks/gpu_fused.py --cpu --jsonl PATH             # checks the script on a CPU

GPT-2 small (`model=gpt2`, random init, bf16-mixed) at benchmarks/gpu.py's 16 x 1024: a
50,257-word head, whose logits the kernels never hold whole (3.3 GB in fp32). Equality is
tests/models/test_fused_loss.py's at full size: one bf16-autocast forward and backward through
the backbone's own loss and through `fused_loss_forward` with the kernel, loss within 1e-2 and
every gradient within rtol 5e-2, atol 5e-3 (bf16 rounding); the largest differences are
reported. On a CPU the kernels cannot run (Triton): a plain head + cross-entropy stands in for
them, as in that test, and only the plain loss is timed. One JSON line per kind (`plain`,
`liger`, `cce`) as soon as it is measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import (  # noqa: E402
    GPT2,
    append_line,
    compose_run,
    gpt2_run,
    matmul_peak_tflops,
    quiet_training_logs,
    random_batches,
)

from storygen.environment.resolvers import setup_environment  # noqa: E402
from storygen.models.fused_loss import (  # noqa: E402
    FUSED_LOSSES,
    build_fused_loss,
    fused_loss_forward,
)


def head_then_cross_entropy(hidden, weight, labels):
    """What every fused kernel computes, written plainly (the CPU's stand-in)."""
    logits = hidden[:, :-1] @ weight.T
    return F.cross_entropy(logits.flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)


def loss_and_grads(backbone, batch, loss_fn, device: torch.device):
    backbone.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        if loss_fn is None:
            loss = backbone(**batch).loss
        else:
            loss = fused_loss_forward(backbone, batch, loss_fn)
    loss.backward()
    grads = {
        n: p.grad.float().clone() for n, p in backbone.named_parameters() if p.grad is not None
    }
    return loss.float().item(), grads


def compare(plain: tuple, fused: tuple) -> dict:
    (plain_loss, plain_grads), (fused_loss, fused_grads) = plain, fused
    worst, worst_name, close = 0.0, None, fused_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        other = fused_grads.get(name)
        if other is None:
            continue
        excess = ((other - grad).abs() - 5e-2 * grad.abs()).max().item()  # over rtol
        close &= excess <= 5e-3
        if excess > worst or worst_name is None:
            worst, worst_name = excess, name
    return {
        "loss": fused_loss,
        "plain_loss": plain_loss,
        "loss_abs_diff": abs(fused_loss - plain_loss),
        "grads_close": bool(close),
        "worst_grad": worst_name,
        "worst_grad_excess_over_rtol": worst,
        "equal": bool(close and abs(fused_loss - plain_loss) <= 1e-2 + 1e-2 * abs(plain_loss)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--jsonl", required=True)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=3)
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --cpu")
    quiet_training_logs()
    setup_environment()
    kind = "cpu" if args.cpu else "gpu"
    device = torch.device("cpu" if args.cpu else "cuda")
    steps, warmup = (2, 1) if args.cpu else (args.steps, args.warmup_steps)
    peak = matmul_peak_tflops(
        device, *((torch.float32, 1024) if args.cpu else (torch.bfloat16, 8192))
    )
    batch_size, context, arch = GPT2[kind]

    with tempfile.TemporaryDirectory(prefix="storygen-fused-") as tmp:
        overrides = [f"model.backbone.architecture.{key}={value}" for key, value in arch.items()]
        cfg = compose_run("gpt2", overrides, f"{tmp}/equality", args.cpu)
        torch.manual_seed(cfg.seed)
        # eval: no dropout, so both losses see the same network (as the test does)
        backbone = instantiate(cfg.model.backbone).to(device).eval()
        batch = random_batches(50257, batch_size, context, 1)[0]
        batch["labels"] = batch["labels"].clone()
        batch["labels"][0, : context // 4] = -100  # a masked prompt, as the collator masks it
        batch = {key: value.to(device) for key, value in batch.items()}
        plain = loss_and_grads(backbone, batch, None, device)
        equality = {}
        for name in FUSED_LOSSES:
            loss_fn = head_then_cross_entropy if args.cpu else build_fused_loss(name)
            equality[name] = compare(plain, loss_and_grads(backbone, batch, loss_fn, device))
            equality[name]["kernel"] = "cpu stand-in" if args.cpu else FUSED_LOSSES[name]
        del backbone, plain
        if device.type == "cuda":
            torch.cuda.empty_cache()

        runs = {}
        for name in (None, *([] if args.cpu else FUSED_LOSSES)):
            run = gpt2_run(
                f"{tmp}/{name}", kind, warmup, steps, peak, [f"model.fused_loss={name or 'null'}"]
            )
            line = {"step": "fused", "kind": name or "plain", **equality.get(name, {}), **run}
            if name is not None:
                line["over_plain_tokens_per_s"] = run["tokens_per_s"] / runs[None]["tokens_per_s"]
                line["peak_memory_over_plain"] = (
                    run["peak_memory_bytes"] / runs[None]["peak_memory_bytes"]
                )
            runs[name] = run
            append_line(args.jsonl, line)
            print(json.dumps(line), flush=True)
        if args.cpu:  # the stand-in's equality, with no kernel timing to go with it
            for name, result in equality.items():
                line = {"step": "fused", "kind": name, **result}
                append_line(args.jsonl, line)
                print(json.dumps(line), flush=True)
    failed = [name for name, result in equality.items() if not result["equal"]]
    if failed:
        raise SystemExit(f"fused loss differs from the plain loss: {', '.join(failed)}")


if __name__ == "__main__":
    main()
