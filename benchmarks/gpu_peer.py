"""The peer of benchmarks/gpu_7b.py: the same QLoRA step in a plain transformers + peft +
bitsandbytes loop, on the same random init and the same batches, with storygen's tokens/s
over the peer's as the ratio.

    python benchmarks/gpu_peer.py --init DIR --jsonl $OUT/1_results.jsonl   # gpu_check.sh
    python benchmarks/gpu_peer.py --cpu --init DIR --jsonl PATH   # tiny, fp32: checks the script

The step is what conf/model/mistral_lora.yaml and trainer=gpu configure, written out by hand
as a user of those three libraries would: nf4 + double quant loaded onto the GPU with bf16
compute, `prepare_model_for_kbit_training` with non-reentrant gradient checkpointing, LoRA
r=16, alpha 16 on every projection, paged 8-bit AdamW (lr 2e-4, weight decay 0.01), a linear
schedule with 5 warm-up steps, bf16 autocast, gradient clipping at 1.0, one optimizer step per
batch. No Lightning, no storygen in the loop (the batches come from benchmarks/gpu.py, so
they are the same ones). DIR is the random init gpu_7b.py --keep-init left (written here first
if it is missing). The ratio reads gpu_7b.py's line for the same batch size from the --jsonl
file, where the device check put it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu import append_line, random_batches, synchronize  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def build_peer(init: Path, device: torch.device, compute: torch.dtype):
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute,
    )
    model = AutoModelForCausalLM.from_pretrained(
        init,
        quantization_config=quantization,
        device_map={"": device.index or 0} if device.type == "cuda" else {"": "cpu"},
        dtype=compute,
        attn_implementation="sdpa",
    )
    model = prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": False},
    )
    model.config.use_cache = False
    lora = LoraConfig(
        task_type="CAUSAL_LM", r=16, lora_alpha=16, lora_dropout=0.0, bias="none",
        target_modules=TARGETS,
    )  # fmt: skip
    return get_peft_model(model, lora).train()


def train_peer(model, batches: list[dict], warmup: int, device: torch.device) -> dict:
    from transformers import get_linear_schedule_with_warmup

    trained = [p for p in model.parameters() if p.requires_grad]
    if device.type == "cuda":
        import bitsandbytes as bnb

        optimizer = bnb.optim.PagedAdamW8bit(trained, lr=2e-4, weight_decay=0.01)
    else:  # paged 8-bit AdamW needs CUDA
        optimizer = torch.optim.AdamW(trained, lr=2e-4, weight_decay=0.01)
    scheduler = get_linear_schedule_with_warmup(optimizer, 5, len(batches))
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    marks = []
    for index, batch in enumerate(batches):
        batch = {key: value.to(device) for key, value in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if index + 1 in (warmup, len(batches)):
            synchronize(device)
            marks.append(time.perf_counter())
    steps = len(batches) - warmup
    batch_size, context = batches[0]["input_ids"].shape
    seconds = marks[1] - marks[0]
    run = {
        "batch": batch_size,
        "context": context,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "step_s": seconds / steps,
        "tokens_per_s": batch_size * context * steps / seconds,
        "optimizer": type(optimizer).__name__,
        "final_loss": float(loss),
    }
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info()
        run |= {
            "peak_memory_bytes": torch.cuda.max_memory_allocated(),
            "max_memory_reserved_bytes": torch.cuda.max_memory_reserved(),
            "device_used_bytes": total - free,
        }
    return run


def storygen_lines(jsonl: Path) -> dict[int, dict]:
    """gpu_7b.py's results in the device check's file, by batch size."""
    if not jsonl.is_file():
        return {}
    lines = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    return {
        line["batch"]: line for line in lines if line.get("step") == "qlora_7b" and "batch" in line
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--init", required=True, help="gpu_7b.py --keep-init's dir")
    parser.add_argument("--jsonl", required=True)
    parser.add_argument("--batches", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=3)
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --cpu")
    device = torch.device("cpu" if args.cpu else "cuda")
    context = min(args.context, 128) if args.cpu else args.context  # as gpu_7b.py --cpu
    init = Path(args.init)
    if not (init / "config.json").is_file():
        from gpu_7b import TINY
        from mistral_init import save_mistral_init

        architecture = ["num_hidden_layers=2", *TINY] if args.cpu else []
        dtype = torch.float32 if args.cpu else torch.bfloat16
        save_mistral_init(init, architecture, device.type, dtype)
    start = time.perf_counter()
    model = build_peer(init, device, torch.float32 if args.cpu else torch.bfloat16)
    load_s = time.perf_counter() - start
    ours = storygen_lines(Path(args.jsonl))
    for batch in args.batches:
        batches = random_batches(32000, batch, context, args.warmup_steps + args.steps)
        run = train_peer(model, batches, args.warmup_steps, device)
        run["load_and_quantize_s"] = round(load_s, 1)
        if batch in ours:
            run["storygen_tokens_per_s"] = ours[batch]["tokens_per_s"]
            run["storygen_over_peer"] = ours[batch]["tokens_per_s"] / run["tokens_per_s"]
            if "peak_memory_bytes" in run:
                run["storygen_peak_over_peer"] = (
                    ours[batch]["peak_memory_bytes"] / run["peak_memory_bytes"]
                )
        append_line(args.jsonl, {"step": "peer", "device": str(device), **run})
        print(json.dumps(run), flush=True)


if __name__ == "__main__":
    main()
