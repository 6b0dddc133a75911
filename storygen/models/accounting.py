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


# Double quantization stores each block of 64 weights' absmax as 8 bits, plus one fp32 absmax
# per 256 such blocks: 8/64 + 32/(64*256) = 0.127 bit per weight (0.5 bit without it).
QUANT_CONSTANT_BYTES = {True: 1 / 64 + 4 / (64 * 256), False: 4 / 64}
CUDA_CONTEXT_BYTES = 0.5 * GIB  # driver, kernels, cuBLAS workspace: outside torch's allocator


@dataclass(frozen=True)
class TrainingShape:
    """What one training step's memory depends on, as the config gives it."""

    family: str
    """`llama` (Mistral, Llama: RMSNorm, SwiGLU, rotary, GQA) or `gpt2`"""
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    batch_size: int
    seq_len: int
    quantized: bool = False
    double_quant: bool = True
    lora_r: int = 0
    lora_targets: int = 0
    """LoRA-adapted linear layers per transformer layer"""
    mixed_precision: bool = False
    """bf16/fp16-mixed: fp32 weights, matmuls autocast to 16 bits"""
    gradient_checkpointing: bool = False
    optimizer_bytes_per_param: float = 8.0
    """AdamW: two fp32 moments; bitsandbytes' 8-bit AdamW: two bytes + block absmax"""
    paged_optimizer: bool = False
    """bitsandbytes paged state lives in CUDA unified memory, outside torch's allocator"""
    on_gpu: bool = False
    attention_matrix: bool = False
    """attention probabilities materialized (SDPA's math path: CPU with attention dropout)"""

    @property
    def tokens(self) -> int:
        return self.batch_size * self.seq_len


def layer_activation_bytes(shape: TrainingShape) -> float:
    """Bytes one transformer layer saves for backward, per token.

    Counted with `torch.autograd.graph.saved_tensors_hooks` on transformers' Mistral and
    GPT-2 layers in fp32 (tests/models/test_memory.py checks the sum against a measured
    peak). Mistral saves q, its input, both norm outputs and the attention output (5 x
    hidden), k and v (2 x kv width), gate, SiLU, up and their product (4 x intermediate)
    and each LoRA A output (r). Under mixed precision the residual stream stays fp32 (fp32
    embeddings; bitsandbytes returns the input's dtype), while every 4-bit and LoRA matmul
    saves its own 16-bit copy of its input and SDPA its 16-bit q, k, v and output.
    """
    h, i, kv = shape.hidden, shape.intermediate, shape.hidden * shape.kv_heads // shape.heads
    lora = shape.lora_targets * shape.lora_r
    if shape.family == "gpt2":  # ln, qkv, attention, proj, mlp 4x, gelu, dropout masks
        elements = 30 * h + (3 * shape.heads * shape.seq_len if shape.attention_matrix else 0)
        if not shape.mixed_precision:
            return 4.0 * (elements + lora)
        return 4.0 * 4 * h + 2.0 * (elements - 4 * h + lora)  # residual and norms in fp32
    if not shape.mixed_precision:
        return 4.0 * (5 * h + 2 * kv + 4 * i + lora + shape.heads)
    r, c = 4.0, 2.0  # residual stream fp32, compute 16-bit
    if shape.quantized:  # each 4-bit and LoRA matmul copies its fp32 input to 16 bits
        return h * (4 * r + 12 * c) + kv * (r + 2 * c) + i * (3 * r + 2 * c) + lora * c
    return h * (3 * r + 8 * c) + kv * 2 * c + i * 4 * c + lora * c


@dataclass(frozen=True)
class MemoryEstimate:
    """One training step's memory in bytes, by what holds it (see `estimate_training_memory`).

    `peak_allocated` is what torch.cuda.max_memory_allocated (or the CPU allocator's live
    tensor bytes) should show; the CUDA context and paged optimizer state come on top on a
    GPU, and the caching allocator reserves more than it allocates (not estimated).
    """

    quantized_weights: float
    float_weights: float
    optimizer_state: float
    paged_optimizer_state: float
    gradients: float
    activations: float
    recompute: float
    loss: float
    dequantized: float
    autocast_copies: float
    optimizer_step: float
    cuda_context: float
    peak_allocated: float
    peak_phase: str

    @property
    def total(self) -> float:
        return self.peak_allocated + self.paged_optimizer_state + self.cuda_context

    def lines(self) -> list[str]:
        parts = [
            ("4-bit weights + constants", self.quantized_weights),
            ("fp32 weights", self.float_weights),
            ("optimizer state", self.optimizer_state),
            ("gradients", self.gradients),
            ("saved activations", self.activations),
            ("1-layer recompute", self.recompute),
            ("loss (logits, CE bwd)", self.loss),
            ("dequantized weight", self.dequantized),
            ("autocast weight copies", self.autocast_copies),
            ("optimizer step temps", self.optimizer_step),
            (f"peak allocated ({self.peak_phase})", self.peak_allocated),
            ("paged optimizer state", self.paged_optimizer_state),
            ("CUDA context", self.cuda_context),
            ("total on the device", self.total),
        ]
        return [f"  {name:<30}: {value / GIB:8.2f} GiB" for name, value in parts]


def estimate_training_memory(count: ParameterCount, shape: TrainingShape) -> MemoryEstimate:
    """The peak of one training step: persistent weights and optimizer state, plus the
    largest of its phases.

    Weights: 4-bit packed with their quantization constants; everything else fp32 (full
    fine-tuning keeps fp32 masters; peft's k-bit preparation upcasts embeddings, LM head and
    norms to fp32). Phases: the loss backward (all saved activations, or only each layer's
    input under checkpointing, plus 12 bytes per logit: the fp32 log-probabilities kept for
    backward, their gradient and the gradient of the logits); a layer's backward (its
    recompute under checkpointing, a dequantized weight, gradients in flight, the trainable
    gradients); the optimizer step (gradients, plus one fp32 temporary per parameter for
    torch's foreach AdamW). Paged 8-bit AdamW state and the CUDA context are counted beside
    the allocator's peak. Not counted: allocator fragmentation (reserved minus allocated).
    """
    packed = count.unquantized_total - count.total if shape.quantized else 0
    quantized_weights = packed + 2 * packed * QUANT_CONSTANT_BYTES[shape.double_quant]
    float_weights = (count.total - packed) * 4.0
    gradients = count.trainable * 4.0
    state = count.trainable * shape.optimizer_bytes_per_param
    paged = state if shape.paged_optimizer and shape.on_gpu else 0.0
    optimizer_state = state - paged
    compute_bytes = 2.0 if shape.mixed_precision else 4.0
    residual_bytes = 4.0

    per_layer = layer_activation_bytes(shape) * shape.tokens
    outside_layers = 3 * shape.hidden * residual_bytes * shape.tokens  # embeddings, final norm
    if shape.gradient_checkpointing:
        activations = shape.layers * shape.hidden * residual_bytes * shape.tokens + outside_layers
        recompute = per_layer
    else:
        activations = shape.layers * per_layer + outside_layers
        recompute = 0.0
    loss = 12.0 * shape.tokens * shape.vocab
    largest_linear = shape.hidden * max(shape.hidden, shape.intermediate)
    dequantized = largest_linear * compute_bytes if shape.quantized else 0.0
    in_flight = (shape.hidden + shape.intermediate) * residual_bytes * shape.tokens
    # the 16-bit copies autocast keeps of trainable matmul weights for the whole step
    autocast_copies = count.trainable * 2.0 if shape.mixed_precision else 0.0
    fused = shape.on_gpu or shape.optimizer_bytes_per_param < 8
    optimizer_step = 0.0 if fused else count.trainable * 4.0

    phases = {
        "loss backward": activations + loss + autocast_copies,
        # the final norm's and the LM head's saved inputs are freed before the first layer's
        # backward; the embeddings' output is the first layer's saved input
        "layer backward": activations
        - outside_layers
        + recompute
        + dequantized
        + in_flight
        + gradients
        + autocast_copies,
        "optimizer step": gradients + optimizer_step,
    }
    phase = max(phases, key=phases.get)
    persistent = quantized_weights + float_weights + optimizer_state
    return MemoryEstimate(
        quantized_weights=quantized_weights,
        float_weights=float_weights,
        optimizer_state=optimizer_state,
        paged_optimizer_state=paged,
        gradients=gradients,
        activations=activations,
        recompute=recompute,
        loss=loss,
        dequantized=dequantized,
        autocast_copies=autocast_copies,
        optimizer_step=optimizer_step,
        cuda_context=CUDA_CONTEXT_BYTES if shape.on_gpu else 0.0,
        peak_allocated=persistent + phases[phase],
        peak_phase=phase,
    )
