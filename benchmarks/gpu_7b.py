"""Mistral-7B's real shape in QLoRA on one GPU: seconds per step, tokens/s and memory at the
study's batch 2 and the config's batch 8 (x 512 tokens), against `storygen.inspect`'s estimate.

    python benchmarks/gpu_7b.py [--out PATH] [--batches 2 8] [--steps 8] [--warmup-steps 3]
    python benchmarks/gpu_7b.py --keep-init DIR --jsonl $OUT/1_results.jsonl  # gpu_check.sh
    python benchmarks/gpu_7b.py --cpu     # a tiny Mistral in fp32 on the CPU: checks the script

The model is conf/model/mistral_lora.yaml's architecture (hidden 4096, intermediate 14336, 32
layers, 32 heads, 8 KV heads, vocab 32000), random init written in bf16 straight from the GPU
(benchmarks/mistral_init.py: no fp32 copy on the host), then loaded by storygen's own path
(`model=mistral_lora trainer=gpu model.backbone.name_or_path=<dir>`): nf4 + double quant
quantized on the GPU while loading, LoRA r=16 on every projection, gradient checkpointing,
paged 8-bit AdamW, bf16-mixed, Lightning, on fixed random batches. One model serves every
batch size; peak statistics are reset before each. Writes JSON after each batch size (--out,
else $OUT/gpu_7b.json, else benchmarks/results/gpu_7b.json), or with --jsonl appends one JSON
line per batch size as soon as it is measured. --keep-init DIR writes the random init there
(or reuses one already there) and leaves it for benchmarks/gpu_peer.py, the plain loop on the
same weights and batches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before huggingface_hub is imported

import torch  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

# benchmarks/ (gpu.py, mistral_init.py) and the repository root (tests.conftest)
sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]
from gpu import (  # noqa: E402
    CPU_QLORA,
    ROOT,
    append_line,
    compose_run,
    datasheet_peak_tflops,
    matmul_peak_tflops,
    train_run,
)
from mistral_init import save_mistral_init  # noqa: E402

from storygen.environment.resolvers import setup_environment  # noqa: E402
from storygen.inspect import memory_estimate  # noqa: E402
from storygen.models.accounting import count_parameters  # noqa: E402
from storygen.models.loader import build_skeleton  # noqa: E402
from tests.conftest import compose_config  # noqa: E402

TINY = ["hidden_size=64", "intermediate_size=128", "num_attention_heads=4", "num_key_value_heads=2"]


def estimate(architecture_overrides: list[str], batch: int, context: int, cpu: bool, tmp: str):
    """`python -m storygen.inspect model=mistral_lora trainer=gpu data.batch_size=<batch>`."""
    overrides = [
        "model=mistral_lora",
        f"trainer={'cpu' if cpu else 'gpu'}",
        f"data.batch_size={batch}",
        f"seq_len={context}",
        *[f"model.backbone.architecture.{item}" for item in architecture_overrides],
    ]
    if cpu:
        overrides += CPU_QLORA
    cfg = compose_config(overrides, Path(tmp), config_name="inspect")
    architecture = instantiate(cfg.model.backbone.architecture)
    skeleton = build_skeleton(architecture, instantiate(cfg.model.backbone.lora))
    _, memory = memory_estimate(
        cfg, architecture, skeleton, count_parameters(skeleton, assume_4bit=True)
    )
    return memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--out")
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--init-dir", help="where to write the random init (default: a temp dir)")
    parser.add_argument("--keep-init", help="the random init's dir, reused if there, kept after")
    parser.add_argument("--jsonl", help="append one JSON line per batch size here")
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --cpu")
    out = Path(
        args.out
        or (Path(os.environ["OUT"]) / "gpu_7b.json" if os.environ.get("OUT") else None)
        or ROOT / "benchmarks" / "results" / "gpu_7b.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    setup_environment()
    architecture = ["num_hidden_layers=2", *TINY] if args.cpu else []
    context = min(args.context, 128) if args.cpu else args.context
    device = "cpu" if args.cpu else "cuda"
    result: dict = {"device": "cpu" if args.cpu else torch.cuda.get_device_name()}
    datasheet = None if args.cpu else datasheet_peak_tflops(result["device"])

    def write() -> None:
        if not args.jsonl:
            out.write_text(json.dumps(result, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="storygen-7b-", dir=args.init_dir) as tmp:
        dtype = torch.float32 if args.cpu else torch.bfloat16
        init = Path(args.keep_init or f"{tmp}/init")
        if (init / "config.json").is_file():
            result["init"] = {"dir": str(init), "reused": True}
        else:
            result["init"] = save_mistral_init(init, architecture, device, dtype)
        write()
        overrides = [
            f"model.backbone.name_or_path={init}",
            "model.tokenizer._target_=storygen.models.loader.build_tokenizer",
            f"+model.tokenizer.name_or_path={init}",
        ]
        if args.cpu:
            overrides += CPU_QLORA
        cfg = compose_run("mistral_lora", overrides, f"{tmp}/run", args.cpu)
        start = time.perf_counter()
        model = instantiate(cfg.model, tokenizer=instantiate(cfg.model.tokenizer))
        result["load_and_quantize_s"] = round(time.perf_counter() - start, 1)
        if not args.cpu:
            result["allocated_after_load_bytes"] = torch.cuda.memory_allocated()
        count = count_parameters(model.backbone)
        result["params"] = {"trainable": count.trainable, "all": count.total}
        matmul_dtype = torch.float32 if args.cpu else torch.bfloat16
        peak = matmul_peak_tflops(torch.device(device), matmul_dtype, 2048 if args.cpu else 8192)
        result["matmul_peak_tflops"] = peak
        write()
        for batch in args.batches:
            run = train_run(
                cfg, 32000, batch, context, args.warmup_steps, args.steps, peak, model=model
            )
            memory = estimate(architecture, batch, context, args.cpu, tmp)
            run["estimate_peak_allocated_bytes"] = memory.peak_allocated
            run["estimate_total_bytes"] = memory.total
            run["estimate_phase"] = memory.peak_phase
            run["measured_over_estimate"] = run["peak_memory_bytes"] / memory.peak_allocated
            if datasheet:
                run["mfu_datasheet"] = run["model_tflops"] / datasheet
            result[f"batch_{batch}"] = run
            write()
            if args.jsonl:
                head = {k: v for k, v in result.items() if not k.startswith("batch_")}
                append_line(args.jsonl, {"step": "qlora_7b", **head, **run})
            print(
                f"batch {batch} x {context}: {run['step_s']:.3f} s/step, "
                f"{run['tokens_per_s']:.0f} tokens/s, MFU {run['mfu']:.1%}, peak "
                f"{run['peak_memory_bytes'] / 2**30:.2f} GiB (reserved "
                f"{run.get('max_memory_reserved_bytes', 0) / 2**30:.2f}, device "
                f"{run.get('device_used_bytes', 0) / 2**30:.2f}), estimate "
                f"{memory.peak_allocated / 2**30:.2f} GiB (total {memory.total / 2**30:.2f})",
                flush=True,
            )
    print(f"wrote {args.jsonl or out}")


if __name__ == "__main__":
    main()
