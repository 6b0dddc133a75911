"""Parameter and memory accounting, as the study reports it, before anything is downloaded.

bitsandbytes stores 4-bit weights packed two per byte, and `numel()` of such a weight counts
bytes; the study's totals count them that way (Mistral-7B QLoRA: 3,794,014,208 "params").
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

GIB = 1024**3


@dataclass(frozen=True)
class ParameterCount:
    trainable: int
    total: int
    """4-bit weights counted packed, two per element, as bitsandbytes stores them"""
    unquantized_total: int

    @property
    def percent(self) -> float:
        return 100.0 * self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (
            f"trainable params: {self.trainable:,} || all params: {self.total:,} "
            f"|| trainable%: {self.percent:.2f}%"
        )


def weights_to_quantize(model: nn.Module) -> set[int]:
    """Ids of the weights bitsandbytes turns 4-bit: frozen Linear layers except the output head."""
    get_head = getattr(model, "get_output_embeddings", None)  # peft models forward it
    head = get_head() if callable(get_head) else None
    return {
        id(module.weight)
        for module in model.modules()
        if isinstance(module, nn.Linear) and module is not head and not module.weight.requires_grad
    }


def count_parameters(model: nn.Module, assume_4bit: bool = False) -> ParameterCount:
    """Count each tensor once (tied embeddings are one tensor).

    `assume_4bit` counts the weights bitsandbytes would quantize as packed, for a model
    built unquantized (on the meta device); an already quantized model needs no assumption.
    """
    packed = weights_to_quantize(model) if assume_4bit else set()
    trainable = total = unquantized = 0
    for parameter in model.parameters():
        numel = parameter.numel()
        stored = numel // 2 if id(parameter) in packed else numel
        total += stored
        unquantized += numel if id(parameter) in packed else _unpacked_numel(parameter)
        if parameter.requires_grad:
            trainable += numel
    return ParameterCount(trainable=trainable, total=total, unquantized_total=unquantized)


def _unpacked_numel(parameter: nn.Parameter) -> int:
    """A bitsandbytes 4-bit weight knows its real shape; anything else is what it says."""
    quant_state = getattr(parameter, "quant_state", None)
    if quant_state is not None:
        return int(quant_state.shape.numel())
    return parameter.numel()


@dataclass(frozen=True)
class MemoryEstimate:
    """A rough training-memory budget in bytes; real use adds framework and allocator overhead."""

    weights: float
    gradients: float
    optimizer_state: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer_state + self.activations

    def lines(self) -> list[str]:
        parts = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer state", self.optimizer_state),
            ("activations", self.activations),
            ("total", self.total),
        ]
        return [f"  {name:<16}: {value / GIB:8.2f} GiB" for name, value in parts]


def estimate_training_memory(
    count: ParameterCount,
    *,
    quantized: bool,
    mixed_precision: bool,
    optimizer_bytes_per_param: float,
    batch_size: int,
    seq_len: int,
    hidden_size: int,
    num_layers: int,
    vocab_size: int,
    gradient_checkpointing: bool,
) -> MemoryEstimate:
    """Weights, gradients, optimizer state and activations at a batch size and precision.

    Trainable weights and their gradients are fp32 (Lightning's mixed precision keeps fp32
    masters). Frozen weights are 4-bit packed (plus ~0.5 bit/param of double-quantized
    constants) or in the compute dtype. Activations follow Korthikanti et al. (2022): ~34
    bytes x hidden per token per layer in 16-bit, only each layer's input when checkpointed,
    plus fp32 logits for the loss.
    """
    frozen_stored = count.total - count.trainable
    if quantized:
        packed = count.unquantized_total - count.total  # each packed element holds two weights
        weights = packed + packed * 2 * 0.5 / 8 + (frozen_stored - packed) * 2
    else:
        weights = frozen_stored * (2 if mixed_precision else 4)
    weights += count.trainable * 4
    gradients = count.trainable * 4
    optimizer_state = count.trainable * optimizer_bytes_per_param
    tokens = batch_size * seq_len
    bytes_per_activation = 2 if mixed_precision else 4
    per_layer = (2 if gradient_checkpointing else 34 / 2) * hidden_size * bytes_per_activation
    activations = tokens * (per_layer * num_layers + vocab_size * 4 * 2)
    return MemoryEstimate(weights, gradients, optimizer_state, activations)
