"""Parameter and memory accounting, offline: `python -m storygen.inspect model=...`.

The backbone is built on the meta device from the architecture numbers in the model config,
so nothing is downloaded and nothing is allocated; LoRA is applied for real by peft.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the imports: a dependency out of range is one line
    from storygen.environment.versions import exit_on_unsupported_versions

    exit_on_unsupported_versions()

import warnings
from collections.abc import Callable

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from storygen.environment.devices import device_of
from storygen.environment.resolvers import CONF_DIR
from storygen.environment.shutdown import exit_quickly
from storygen.errors import StorygenError, exit_on_user_error
from storygen.models.accounting import (
    MemoryEstimate,
    ParameterCount,
    TrainingShape,
    count_parameters,
    estimate_training_memory,
)
from storygen.models.loader import build_skeleton
from storygen.run.checks import check_optimizer


def tokens_per_epoch(cfg: DictConfig) -> int:
    """Counted from the train split tokenized ahead (as a run tokenizing as it loads would
    read them)."""
    tokenizer = instantiate(cfg.model.tokenizer)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer, tokenize_train="ahead")
    return datamodule.train_size()[2]


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

    shape, memory = memory_estimate(cfg, architecture, model, count)
    optimizer = cfg.model.optimizer._target_.rsplit(".", 1)[-1]
    lines.append(
        f"memory estimate, one training step (batch {shape.batch_size} x {shape.seq_len} tokens, "
        f"{cfg.trainer.precision}, {optimizer}, gradient checkpointing "
        f"{'on' if shape.gradient_checkpointing else 'off'}, "
        f"{'GPU' if shape.on_gpu else 'CPU'}):"
    )
    lines += memory.lines()
    lines.append(
        "  (peak allocated: what max_memory_allocated shows; the total adds paged optimizer "
        "state and the CUDA context; allocator fragmentation comes on top)"
    )
    if cfg.with_data:
        lines.append(f"tokens per epoch: {tokens_per_epoch(cfg):,}")
    return "\n".join(lines)


def memory_estimate(
    cfg: DictConfig, architecture, model, count: ParameterCount
) -> tuple[TrainingShape, MemoryEstimate]:
    shape = training_shape(cfg, architecture, model)
    return shape, estimate_training_memory(count, shape)


def training_shape(cfg: DictConfig, architecture, model) -> TrainingShape:
    """The numbers the memory model needs, from the composed config and the built skeleton."""
    backbone = cfg.model.backbone
    quantization = backbone.get("quantization")
    lora = backbone.get("lora")
    optimizer_factory = instantiate(cfg.model.optimizer)
    check_optimizer(optimizer_factory)
    state_bytes, paged = optimizer_state(optimizer_factory)
    layers = architecture.num_hidden_layers
    adapted = sum(1 for name, _ in model.named_modules() if name.endswith("lora_A"))
    on_gpu = device_of(cfg.trainer.accelerator) == "cuda"
    attention_dropout = getattr(architecture, "attn_pdrop", None) or getattr(
        architecture, "attention_dropout", 0.0
    )
    hidden = architecture.hidden_size
    return TrainingShape(
        family="gpt2" if architecture.model_type == "gpt2" else "llama",
        hidden=hidden,
        intermediate=getattr(architecture, "intermediate_size", None)
        or getattr(architecture, "n_inner", None)
        or 4 * hidden,
        layers=layers,
        heads=architecture.num_attention_heads,
        kv_heads=getattr(architecture, "num_key_value_heads", None)
        or architecture.num_attention_heads,
        vocab=architecture.vocab_size,
        batch_size=int(cfg.data.batch_size),
        seq_len=int(cfg.seq_len),
        quantized=quantization is not None,
        double_quant=bool(quantization and quantization.get("bnb_4bit_use_double_quant")),
        lora_r=int(lora.r) if lora else 0,
        lora_targets=adapted // layers,
        mixed_precision=str(cfg.trainer.precision).startswith(("bf16", "16")),
        gradient_checkpointing=bool(backbone.get("gradient_checkpointing", False)),
        optimizer_bytes_per_param=state_bytes,
        paged_optimizer=paged,
        on_gpu=on_gpu,
        attention_matrix=not on_gpu and attention_dropout > 0,
    )


def optimizer_state(optimizer_factory: Callable) -> tuple[float, bool]:
    """The optimizer's state bytes per trained parameter, and whether that state is paged, as
    the optimizer itself keeps them: not guessed from its name, however the config builds it.

    It takes one step on two dummy fp32 weights on the CPU; the state that grows with the
    weight is the difference, so fixed tables (bitsandbytes' quantization maps, step counts)
    drop out: AdamW's two fp32 moments give 8, bitsandbytes' 8-bit AdamW two bytes and an fp32
    absmax per 256 values. Both weights are above bitsandbytes' `min_8bit_size` (4096), under
    which it keeps 32-bit state; LoRA's matrices are that big too.
    """
    sizes, state_bytes = (2**14, 2**15), []
    for size in sizes:
        weight = torch.nn.Parameter(torch.zeros(size))
        weight.grad = torch.ones(size)
        optimizer = optimizer_factory([weight])
        with warnings.catch_warnings():  # paged state falls back to plain memory on a CPU
            warnings.filterwarnings("ignore", "Paged optimizers are not supported on CPU")
            optimizer.step()
        state = optimizer.state[weight].values()
        state_bytes.append(sum(t.nbytes for t in state if torch.is_tensor(t)))
    per_param = (state_bytes[1] - state_bytes[0]) / (sizes[1] - sizes[0])
    return per_param, bool(getattr(optimizer, "is_paged", False))


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="inspect")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        print(report(cfg))


if __name__ == "__main__":
    exit_quickly()
    main()
