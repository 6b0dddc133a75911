"""Save a random-init Mistral with the real config (conf/model/mistral_lora.yaml) as a local
model dir that `model=mistral_lora` loads through config overrides alone:

    python benchmarks/mistral_init.py DIR [--layers 32] [--device cuda] [KEY=VALUE ...]
    python -m storygen.train model=mistral_lora trainer=gpu \
        model.backbone.name_or_path=DIR model.tokenizer.name_or_path=DIR ...

The weights are initialized on `--device` directly in bf16 (the 7B shape: 14.5 GB on the
GPU, never 29 GB of fp32 on the host) and written as safetensors; loading them with the
config's nf4 quantization then quantizes on the GPU, as a hub checkpoint would. The
tokenizer is Mistral-7B-v0.1's own SentencePiece model, shipped by the `mistral-common`
package, saved beside the weights. KEY=VALUE overrides the architecture (shrinks it for a
CPU dry run: `hidden_size=64 intermediate_size=128 num_attention_heads=4`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from transformers import AutoModelForCausalLM

from storygen.environment.resolvers import CONF_DIR, setup_environment
from storygen.models.loader import build_offline_mistral_tokenizer


def mistral_architecture(overrides: list[str]):
    """The MistralConfig of conf/model/mistral_lora.yaml, with architecture overrides."""
    setup_environment()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                "model=mistral_lora",
                *[f"model.backbone.architecture.{item}" for item in overrides],
            ],
        )
    return instantiate(cfg.model.backbone.architecture)


def save_tokenizer(out_dir: Path) -> None:
    build_offline_mistral_tokenizer().save_pretrained(out_dir)


def save_mistral_init(
    out_dir: Path, overrides: list[str], device: str, dtype: torch.dtype, seed: int = 0
) -> dict:
    architecture = mistral_architecture(overrides)
    start = time.perf_counter()
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(architecture, dtype=dtype)
    init_s = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    model.save_pretrained(out_dir)
    del model
    save_tokenizer(out_dir)
    return {
        "dir": str(out_dir),
        "params": params,
        "dtype": str(dtype).removeprefix("torch."),
        "layers": architecture.num_hidden_layers,
        "hidden_size": architecture.hidden_size,
        "init_s": round(init_s, 1),
        "init_and_save_s": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--layers", type=int, help="num_hidden_layers (default: the config's)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("overrides", nargs="*", help="architecture KEY=VALUE")
    args = parser.parse_intermixed_args()
    overrides = list(args.overrides)
    if args.layers:
        overrides.append(f"num_hidden_layers={args.layers}")
    info = save_mistral_init(args.out_dir, overrides, args.device, getattr(torch, args.dtype))
    print(json.dumps(info))


if __name__ == "__main__":
    main()
