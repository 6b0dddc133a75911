"""Peak memory (RSS) of 4-bit LoRA training vs full fine-tuning, same Mistral architecture, CPU.

    python benchmarks/memory.py [--hidden 1024] [--intermediate 3584] [--layers 12]
        [--vocab 32000] [--batch-size 2] [--seq-len 128] [--steps 3]

The model is conf/model/mistral_tiny_lora.yaml grown to the given size (nf4, double quant,
fp32 compute, LoRA r=16 on q,k,v,o,gate,up,down) and the same config without
`quantization` and `lora` for full fine-tuning, both built by storygen's `build_backbone`
from one saved random init, as they would load a hub checkpoint. Each trains `--steps`
steps (AdamW over `parameter_groups`, batches of random token ids) in a fresh subprocess.

Two peaks per child, both from the kernel's high-water mark: after loading (full
fine-tuning maps the fp32 checkpoint without reading it, so its weights come in during the
first step), and while training: the child resets the mark after loading
(`/proc/self/clear_refs`), and the parent reads the child's `ru_maxrss` from `os.wait4`.
A child that only imports the libraries gives the baseline both share. The parent imports
no torch, so that no child inherits its memory as a floor.

"file" (RssFile at the end) is checkpoint pages still mapped: transformers maps the
safetensors file, and the frozen unquantized tensors (embeddings, head, norms) keep that
mapping alive, so on the CPU the fp32 pages read while quantizing stay resident (clean and
reclaimable, but counted in RSS). On a GPU the weights are copied to the device instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
MODES = ("imports only", "QLoRA (nf4 + LoRA)", "full fine-tuning (fp32)")


def proc_status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Set the kernel's RSS high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def backbone_config(args: argparse.Namespace, mode: str, init_dir: str):
    """cfg.model.backbone of `model=mistral_tiny_lora`, resized; unquantized for full FT."""
    from hydra import compose, initialize_config_dir

    overrides = [
        "model=mistral_tiny_lora",
        f"model.backbone.architecture.vocab_size={args.vocab}",
        f"model.backbone.architecture.hidden_size={args.hidden}",
        f"model.backbone.architecture.intermediate_size={args.intermediate}",
        f"model.backbone.architecture.num_hidden_layers={args.layers}",
        f"model.backbone.architecture.num_attention_heads={args.hidden // 64}",
        f"model.backbone.architecture.num_key_value_heads={max(1, args.hidden // 256)}",
        f"model.backbone.init_dir={init_dir}",
        "model.backbone.architecture.bos_token_id=1",  # Mistral's, inside the smaller vocab
        "model.backbone.architecture.eos_token_id=2",
    ]
    if mode == "full":
        overrides += ["~model.backbone.quantization", "~model.backbone.lora"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return cfg.model.backbone, cfg.model.optimizer


def child(args: argparse.Namespace) -> None:
    """One measured process: `--child imports|init|qlora|full`; prints a JSON line."""
    import torch
    from hydra.utils import instantiate

    from storygen.environment.resolvers import setup_environment
    from storygen.models.loader import build_skeleton, save_random_init
    from storygen.models.module import parameter_groups

    setup_environment()
    report: dict = {}
    if args.child == "init":
        backbone_cfg, _ = backbone_config(args, "full", args.init_dir)
        architecture = instantiate(backbone_cfg.architecture)
        report["params"] = sum(p.numel() for p in build_skeleton(architecture).parameters())
        torch.manual_seed(0)
        save_random_init(architecture, Path(args.init_dir))
    if args.child in ("qlora", "full"):
        backbone_cfg, optimizer_cfg = backbone_config(args, args.child, args.init_dir)
        start = time.perf_counter()
        model = instantiate(backbone_cfg)  # from the saved init, as from a hub checkpoint
        report["load_s"] = time.perf_counter() - start
        report["load_peak_kib"] = proc_status_kib("VmHWM")
        report["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
        report["stored_bytes"] = sum(
            p.numel() * p.element_size() for p in model.parameters()
        ) + sum(b.numel() * b.element_size() for b in model.buffers())
    if args.child in ("qlora", "full"):
        report["reset"] = reset_peak_rss()
        optimizer_factory = instantiate(optimizer_cfg)
        optimizer = optimizer_factory(parameter_groups(model))
        generator = torch.Generator().manual_seed(0)
        model.train()
        start = time.perf_counter()
        for _ in range(args.steps):
            ids = torch.randint(0, args.vocab, (args.batch_size, args.seq_len), generator=generator)
            loss = model(input_ids=ids, labels=ids, use_cache=False).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        report["step_s"] = (time.perf_counter() - start) / args.steps
        report["loss"] = loss.item()
        report["end_anon_kib"] = proc_status_kib("RssAnon")
        report["end_file_kib"] = proc_status_kib("RssFile")
    print(json.dumps(report))


def run_child(mode: str, args: argparse.Namespace, init_dir: str) -> tuple[dict, int]:
    """Run one child; its report and its own ru_maxrss in KiB (from wait4, not the max of all)."""
    command = [sys.executable, __file__, "--child", mode, "--init-dir", init_dir]
    for name in ("hidden", "intermediate", "layers", "vocab", "batch_size", "seq_len", "steps"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            sys.stderr.write(errors.read())
            raise SystemExit(f"the {mode} child failed (exit {process.returncode})")
    return json.loads(output.strip().splitlines()[-1]), usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024, help="heads are hidden / 64")
    parser.add_argument("--intermediate", type=int, default=3584)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=32000, help="Mistral's; batches are random")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument(
        "--child", choices=("imports", "init", "qlora", "full"), help=argparse.SUPPRESS
    )
    parser.add_argument("--init-dir", help="internal")
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    mib = 1 / 1024
    with tempfile.TemporaryDirectory(prefix="storygen-memory-") as tmp:
        init_dir = str(Path(tmp) / "base_init")
        init, _ = run_child("init", args, init_dir)
        rows = {}
        for name, mode in zip(MODES, ("imports", "qlora", "full")):
            rows[name] = run_child(mode, args, init_dir)

    params = init["params"]
    print(
        f"Mistral architecture: hidden {args.hidden}, intermediate {args.intermediate}, "
        f"{args.layers} layers, vocab {args.vocab}: {params / 1e6:.1f}M parameters, "
        f"fp32 checkpoint {params * 4 / 2**20:.0f} MiB; {args.steps} steps of "
        f"{args.batch_size} x {args.seq_len} tokens, fp32 compute, CPU"
    )
    header = f"{'run':<26}{'trainable':>12}{'weights':>9}{'load peak':>11}{'train peak':>12}"
    print(f"{header}{'anon + file at end':>20}{'s/step':>8}   (MiB)")
    for name, (report, maxrss) in rows.items():
        if "trainable" not in report:
            print(f"{name:<26}{'':>12}{'':>9}{'':>11}{maxrss * mib:>12.0f}")
            continue
        anon, file = report["end_anon_kib"] * mib, report["end_file_kib"] * mib
        print(
            f"{name:<26}{report['trainable']:>12,}{report['stored_bytes'] / 2**20:>9.0f}"
            f"{report['load_peak_kib'] * mib:>11.0f}{maxrss * mib:>12.0f}"
            f"{f'{anon:.0f} + {file:.0f}':>20}{report['step_s']:>8.1f}"
        )
    (qlora, qlora_rss), (full, full_rss) = rows[MODES[1]], rows[MODES[2]]
    base_rss = rows[MODES[0]][1]
    if not (qlora.get("reset") and full.get("reset")):
        print("(the high-water mark could not be reset: training peaks include loading)")
    print(
        f"training peak, QLoRA / full fine-tuning: {qlora_rss / full_rss:.2f} "
        f"({full_rss / qlora_rss:.1f}x less); above the imports-only baseline: "
        f"{(qlora_rss - base_rss) * mib:.0f} vs {(full_rss - base_rss) * mib:.0f} MiB, "
        f"{(qlora_rss - base_rss) / (full_rss - base_rss):.2f}"
    )
    print(f"final losses (random tokens): QLoRA {qlora['loss']:.3f}, full {full['loss']:.3f}")


if __name__ == "__main__":
    main()
