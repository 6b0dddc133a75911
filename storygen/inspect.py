"""Parameter and memory accounting, offline: `python -m storygen.inspect model=...`.

The backbone is built on the meta device from the architecture numbers in the model config,
so nothing is downloaded and nothing is allocated; LoRA is applied for real by peft.
"""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from storygen.config import CONF_DIR, setup_environment
from storygen.errors import StorygenError, exit_on_user_error
from storygen.models.accounting import count_parameters, estimate_training_memory
from storygen.models.loader import build_skeleton


def tokens_per_epoch(cfg: DictConfig) -> int:
    tokenizer = instantiate(cfg.model.tokenizer)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    datamodule.setup("fit")
    return sum(len(ids) for ids in datamodule.tokenized["train"]["input_ids"])


def report(cfg: DictConfig) -> str:
    backbone = cfg.model.backbone
    if backbone.get("architecture") is None:
        raise StorygenError(
            "model.backbone.architecture is not set; add the architecture's numbers "
            "(a transformers config) so the model can be inspected without downloading it."
        )
    architecture = instantiate(backbone.architecture)
    lora = instantiate(backbone.lora) if backbone.get("lora") else None
    quantized = backbone.get("quantization") is not None
    model = build_skeleton(architecture, lora)
    count = count_parameters(model, assume_4bit=quantized)

    method = "full fine-tuning" if lora is None else f"LoRA r={lora.r} alpha={lora.lora_alpha}"
    if quantized:
        method = f"4-bit {backbone.quantization.get('bnb_4bit_quant_type', 'nf4')} base + {method}"
    lines = [
        f"model: {backbone.get('name_or_path') or 'random init'} "
        f"({type(model.get_base_model() if lora else model).__name__}), {method}",
        str(count),
    ]
    if quantized:
        lines.append(
            f"unquantized all params: {count.unquantized_total:,} "
            f"({count.unquantized_total - count.trainable:,} base + {count.trainable:,} adapter)"
        )

    optimizer_target = cfg.model.optimizer._target_
    precision = str(cfg.trainer.precision)
    memory = estimate_training_memory(
        count,
        quantized=quantized,
        mixed_precision=precision.startswith(("bf16", "16")),
        optimizer_bytes_per_param=2.0 if "8bit" in optimizer_target else 8.0,
        batch_size=int(cfg.data.batch_size),
        seq_len=int(cfg.seq_len),
        hidden_size=architecture.hidden_size,
        num_layers=architecture.num_hidden_layers,
        vocab_size=architecture.vocab_size,
        gradient_checkpointing=bool(backbone.get("gradient_checkpointing", False)),
    )
    lines.append(
        f"memory estimate (batch {cfg.data.batch_size} x {cfg.seq_len} tokens, {precision}, "
        f"{optimizer_target.rsplit('.', 1)[-1]}):"
    )
    lines += memory.lines()
    if cfg.with_data:
        lines.append(f"tokens per epoch: {tokens_per_epoch(cfg):,}")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="inspect")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        print(report(cfg))


if __name__ == "__main__":
    setup_environment()
    main()
