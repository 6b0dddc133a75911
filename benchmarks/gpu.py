"""GPU training throughput: GPT-2 small full fine-tuning and a ~1B Mistral QLoRA, through storygen.

    python benchmarks/gpu.py [--out PATH] [--gpt2-steps 30] [--qlora-steps 15] [--warmup-steps 5]
    python benchmarks/gpu.py --runs gpt2 --jsonl $OUT/1_results.jsonl   # benchmarks/gpu_check.sh
    python benchmarks/gpu.py --cpu      # fp32, shrunken sizes: checks the script in a minute

Both runs go through storygen's real path: the composed conf/ tree (`model=gpt2` and
`model=mistral_lora`, built from their architecture with random weights since nothing can
be downloaded, `trainer=gpu`: bf16-mixed), `build_backbone` (nf4 + double quant + LoRA r=16
and gradient checkpointing for Mistral, as configured), StoryLM and the Lightning Trainer
(CSV logging every 10 steps, LR monitor; no progress bar, checkpoints or validation), on
fixed batches of random token ids. The Mistral is the 7B's shape scaled down (hidden 2048,
intermediate 5632, 16 layers, 32 heads, 8 KV heads, vocab 32000: ~0.85B parameters).

Reported per run: tokens/s over the steps after the warm-up; MFU: model FLOPs (6 x matmul
weights per token when trained, 4 x when frozen, + 12 x layers x width x context for
attention; gradient checkpointing's recompute not counted) over the card's dense bf16
matmul peak measured here on an 8192^3 torch.matmul, and over the card's datasheet bf16 dense
peak where it is known (`mfu_datasheet`: H100 and H200 SXM, 989 TFLOP/s); peak memory from
torch.cuda.max_memory_allocated and max_memory_reserved, the device memory in use at the end
(mem_get_info: adds the CUDA context), and the optimizer state counted tensor by tensor, paged
8-bit AdamW state apart (unified memory, outside torch's allocator); with --cpu: the
process's peak RSS so far, fp32 peak.
Writes a JSON file: --out, else $OUT/gpu.json where $OUT is set, else
benchmarks/results/gpu.json; with --jsonl, appends instead one JSON line per run as soon as
it finishes (a later failure loses nothing measured before it).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import statistics
import tempfile
import time
import warnings
from pathlib import Path

# Before anything imports huggingface_hub, which reads it once at import: nothing downloads.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.global_hydra import GlobalHydra  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from lightning.pytorch import Callback  # noqa: E402
from omegaconf import DictConfig, open_dict  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from storygen.environment.resolvers import CONF_DIR, setup_environment  # noqa: E402
from storygen.models.accounting import count_parameters  # noqa: E402
from storygen.train import instantiate_group  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OFFLINE_TOKENIZER = "storygen.models.loader.build_offline_gpt2_tokenizer"

# (batch, context, architecture overrides) on the GPU, then shrunk for --cpu
GPT2 = {
    "gpu": (16, 1024, {}),
    "cpu": (4, 128, {"n_layer": 2, "n_embd": 128, "n_head": 2}),
}
MISTRAL = {
    "gpu": (
        8,
        1024,
        {
            "hidden_size": 2048,
            "intermediate_size": 5632,
            "num_hidden_layers": 16,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "max_position_embeddings": 2048,
        },
    ),
    "cpu": (
        2,
        128,
        {
            "hidden_size": 256,
            "intermediate_size": 512,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
        },
    ),
}

# A QLoRA config on the CPU: no CUDA for 8-bit paged AdamW; compute in fp32 there
CPU_QLORA = [
    "model.optimizer._target_=torch.optim.AdamW",
    "model.backbone.quantization.bnb_4bit_compute_dtype=float32",
]

# Datasheet bf16 dense tensor-core peaks (TFLOP/s, without sparsity), by a word of the
# device's name: NVIDIA's H100 SXM and H200 datasheets both say 989 (1,979 with sparsity).
DATASHEET_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0}

# no checkpoint writers; story metrics only run at validation, which is off here
DROPPED_CALLBACKS = ("model_checkpoint", "interruption", "story_metrics")


def compose_run(model: str, overrides: list[str], output_dir: str, cpu: bool) -> DictConfig:
    """`python -m storygen.train model=<model> trainer=gpu|cpu ...` as a DictConfig."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                f"model={model}",
                f"model.tokenizer._target_={OFFLINE_TOKENIZER}",
                "~model.tokenizer.name_or_path",
                "model.backbone.name_or_path=null",
                f"trainer={'cpu' if cpu else 'gpu'}",
                "trainer.enable_progress_bar=false",
                "++trainer.enable_checkpointing=false",
                "++trainer.limit_val_batches=0",
                "logger=csv",
                *overrides,
            ],
        )
    with open_dict(cfg):
        cfg.paths.root_dir = cfg.paths.output_dir = output_dir
        for name in DROPPED_CALLBACKS:
            cfg.callbacks.pop(name, None)
    return cfg


class StepClock(Callback):
    """Wall time at the end of the warm-up and of the last step (synchronized only there)."""

    def __init__(self, warmup: int, total: int, device: torch.device) -> None:
        self.marks = {warmup, total}
        self.device = device
        self.times: list[float] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 in self.marks:
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter())


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """Median dense matmul TFLOP/s: the practical peak that MFU divides by."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    times = []
    for _ in range(12):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(5 if device.type == "cuda" else 1):
            a @ b
        synchronize(device)
        times.append((time.perf_counter() - start) / (5 if device.type == "cuda" else 1))
    return 2 * size**3 / statistics.median(times[2:]) / 1e12


def datasheet_peak_tflops(device_name: str) -> float | None:
    """The datasheet bf16 dense peak of the named card, if it is one we know (None on a CPU:
    no datasheet figure means anything there). An H100 PCIe (756) is not the SXM part."""
    if "PCIe" in device_name:
        return None
    return next((peak for word, peak in DATASHEET_BF16_TFLOPS.items() if word in device_name), None)


def append_line(path: str | Path, record: dict) -> None:
    """One JSON line, appended and flushed at once: the device check's results file."""
    with open(path, "a") as out:
        out.write(json.dumps(record) + "\n")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def flops_per_token(model: torch.nn.Module, context: int) -> float:
    """6 x trained matmul weights + 4 x frozen ones (no weight gradient) + attention."""
    flops = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):  # bitsandbytes' Linear4bit included
            weights, trained = module.in_features * module.out_features, module.weight.requires_grad
        elif type(module).__name__ == "Conv1D":  # GPT-2's projections
            weights, trained = module.weight.numel(), module.weight.requires_grad
        else:
            continue
        flops += (6 if trained else 4) * weights
    config = model.config
    layers = getattr(config, "num_hidden_layers", None) or config.n_layer
    width = getattr(config, "hidden_size", None) or config.n_embd
    return flops + 12 * layers * width * context


def random_batches(vocab: int, batch: int, context: int, count: int) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(count):
        ids = torch.randint(0, vocab, (batch, context), generator=generator)
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    return batches


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """Bytes of optimizer state, all and paged: bitsandbytes' paged state lives in CUDA
    unified memory, which torch.cuda.max_memory_allocated does not see."""
    total = paged = 0
    for state in optimizer.state.values():
        for value in state.values():
            if torch.is_tensor(value):
                size = value.numel() * value.element_size()
                total += size
                paged += size if getattr(value, "is_paged", False) else 0
    return total, paged


def train_run(
    cfg: DictConfig,
    vocab: int,
    batch: int,
    context: int,
    warmup: int,
    steps: int,
    peak: float,
    model=None,
) -> dict:
    """Train `warmup + steps` steps of `cfg` (or of a model already built from it)."""
    device = torch.device("cpu" if cfg.trainer.accelerator == "cpu" else "cuda")
    start = time.perf_counter()
    if model is None:
        torch.manual_seed(cfg.seed)
        model = instantiate(cfg.model, tokenizer=instantiate(cfg.model.tokenizer))
    build_s = time.perf_counter() - start
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    count = count_parameters(model.backbone)
    clock = StepClock(warmup, warmup + steps, device)
    with open_dict(cfg):
        cfg.trainer.max_steps = warmup + steps
    trainer = instantiate(
        cfg.trainer,
        callbacks=instantiate_group(cfg.callbacks) + [clock],
        logger=instantiate_group(cfg.logger),
    )
    loader = DataLoader(random_batches(vocab, batch, context, warmup + steps), batch_size=None)
    trainer.fit(model, train_dataloaders=loader)
    seconds = clock.times[1] - clock.times[0]
    tokens_per_s = batch * context * steps / seconds
    achieved = tokens_per_s * flops_per_token(model.backbone, context) / 1e12
    memory: dict = {}
    if device.type == "cuda":
        peak_memory = torch.cuda.max_memory_allocated()
        free, total = torch.cuda.mem_get_info()
        memory = {
            "max_memory_reserved_bytes": torch.cuda.max_memory_reserved(),
            # what nvidia-smi shows: reserved + CUDA context + paged memory resident on the GPU
            "device_used_bytes": total - free,
        }
    else:
        peak_memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    state, paged = optimizer_state_bytes(trainer.optimizers[0])
    return {
        "batch": batch,
        "context": context,
        "timed_steps": steps,
        "warmup_steps": warmup,
        "precision": cfg.trainer.precision,
        "trainable_params": count.trainable,
        "all_params": count.total,
        "unquantized_params": count.unquantized_total,
        "build_s": round(build_s, 2),
        "step_s": seconds / steps,
        "tokens_per_s": tokens_per_s,
        "model_tflops": achieved,
        "mfu": achieved / peak,
        "peak_memory_bytes": peak_memory,
        "peak_memory_kind": "max_memory_allocated" if device.type == "cuda" else "ru_maxrss",
        **memory,
        "optimizer": type(trainer.optimizers[0]).__name__,
        "optimizer_state_bytes": state,
        "paged_optimizer_state_bytes": paged,
        "final_loss": float(trainer.callback_metrics.get("train/loss", float("nan"))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true", help="fp32 on the CPU, shrunken sizes")
    parser.add_argument("--out", help="JSON path (default $OUT/gpu.json or benchmarks/results/)")
    parser.add_argument("--jsonl", help="append one JSON line per run here instead of --out")
    parser.add_argument("--runs", nargs="+", choices=["gpt2", "qlora"], default=["gpt2", "qlora"])
    parser.add_argument("--warmup-steps", type=int, default=5)
    parser.add_argument("--gpt2-steps", type=int, default=30)
    parser.add_argument("--qlora-steps", type=int, default=15)
    args = parser.parse_args()
    if not args.cpu and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU machine, or pass --cpu")
    out = Path(
        args.out
        or (Path(os.environ["OUT"]) / "gpu.json" if os.environ.get("OUT") else None)
        or ROOT / "benchmarks" / "results" / "gpu.json"
    )

    quiet_training_logs()
    setup_environment()

    kind = "cpu" if args.cpu else "gpu"
    device = torch.device("cpu" if args.cpu else "cuda")
    dtype, size = (torch.float32, 2048) if args.cpu else (torch.bfloat16, 8192)
    peak = matmul_peak_tflops(device, dtype, size)
    device_name = "cpu" if args.cpu else torch.cuda.get_device_name()
    datasheet = None if args.cpu else datasheet_peak_tflops(device_name)
    result: dict = {
        "device": device_name,
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "matmul_peak_tflops": peak,
        "matmul_peak_dtype": str(dtype).removeprefix("torch."),
        "datasheet_peak_tflops": datasheet,
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="storygen-gpu-") as tmp:
        for name in args.runs:
            if name == "gpt2":
                run = "gpt2_full"
                result[run] = gpt2_run(tmp, kind, args.warmup_steps, args.gpt2_steps, peak)
            else:
                run = "mistral_qlora"
                result[run] = qlora_run(tmp, kind, args.warmup_steps, args.qlora_steps, peak)
            if datasheet:
                result[run]["mfu_datasheet"] = result[run]["model_tflops"] / datasheet
            if args.jsonl:
                head = {k: v for k, v in result.items() if k not in ("gpt2_full", "mistral_qlora")}
                append_line(args.jsonl, {"step": run, **head, **result[run]})
    result["wall_s"] = time.perf_counter() - start

    if not args.jsonl:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    unit = "TFLOP/s"
    print(f"{result['device']}: {str(dtype).removeprefix('torch.')} matmul {peak:.3g} {unit}")
    print(
        f"{'run':<16}{'tokens/s':>11}{'s/step':>9}{unit:>9}{'MFU':>7}{'peak mem GiB':>14}"
        f"{'reserved':>10}{'paged opt':>10}"
    )
    for name in ("gpt2_full", "mistral_qlora"):
        if name not in result:
            continue
        run = result[name]
        print(
            f"{name:<16}{run['tokens_per_s']:>11.0f}{run['step_s']:>9.3f}"
            f"{run['model_tflops']:>9.2f}{run['mfu']:>7.1%}"
            f"{run['peak_memory_bytes'] / 2**30:>14.2f}"
            f"{run.get('max_memory_reserved_bytes', 0) / 2**30:>10.2f}"
            f"{run['paged_optimizer_state_bytes'] / 2**30:>10.3f}"
        )
    print(f"wrote {args.jsonl or out} ({result['wall_s']:.0f} s)")


def quiet_training_logs() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    for message in ("does not have many workers", "loss_type=None", "treespec", "exists and is"):
        warnings.filterwarnings("ignore", f".*{message}.*")


def gpt2_run(
    tmp: str, kind: str, warmup: int, steps: int, peak: float, overrides: list[str] = ()
) -> dict:
    """GPT-2 small (`model=gpt2`, random init) fully fine-tuned, or its --cpu shrinking."""
    batch, context, arch = GPT2[kind]
    overrides = [
        *(f"model.backbone.architecture.{key}={value}" for key, value in arch.items()),
        *overrides,
    ]
    cfg = compose_run("gpt2", overrides, f"{tmp}/gpt2", kind == "cpu")
    return train_run(cfg, 50257, batch, context, warmup, steps, peak)


def qlora_run(tmp: str, kind: str, warmup: int, steps: int, peak: float) -> dict:
    batch, context, arch = MISTRAL[kind]
    overrides = [f"model.backbone.architecture.{key}={value}" for key, value in arch.items()]
    overrides.append(f"++model.backbone.init_dir={tmp}/mistral_init")
    if kind == "cpu":  # 8-bit paged AdamW needs CUDA; the QLoRA compute dtype follows fp32
        overrides += CPU_QLORA
    cfg = compose_run("mistral_lora", overrides, f"{tmp}/mistral", kind == "cpu")
    return train_run(cfg, 32000, batch, context, warmup, steps, peak)


if __name__ == "__main__":
    main()
