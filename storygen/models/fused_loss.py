"""Fused linear cross-entropy: the LM head and the loss in one GPU kernel (`model.fused_loss`).

The plain path materializes logits of batch x length x vocabulary (16 x 1024 x 50,257 floats
for GPT-2: 3.3 GB in fp32, twice that with their gradient). Liger Kernel
(`liger-kernel`) computes them chunk by chunk; Apple's Cut Cross-Entropy (`cut-cross-entropy`)
never writes them at all. Both are Triton kernels, so GPUs only: on a CPU the option fails
with one `error:` line (no CPU kernel measured faster than the plain path there; see
BENCHMARKS.md). Install with `pip install 'storygen[fused-loss]'`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from storygen.data.formatting import IGNORE_INDEX
from storygen.errors import StorygenError

FUSED_LOSSES = {"liger": "liger-kernel", "cce": "cut-cross-entropy"}
FusedLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def check_fused_loss(kind: str | None, device: torch.device | None = None) -> None:
    """Fail at setup on a name that is not a kernel, or a device the kernels cannot run on."""
    if kind is None:
        return
    if kind not in FUSED_LOSSES:
        raise StorygenError(
            f"model.fused_loss={kind} is not a fused loss; use one of "
            f"{', '.join(FUSED_LOSSES)} (GPUs), or null for the plain loss."
        )
    if device is not None and device.type != "cuda":
        raise StorygenError(
            f"model.fused_loss={kind} runs only on CUDA GPUs (Triton kernels), and this run is "
            f"on {device.type}; set model.fused_loss=null (the plain loss) on a CPU."
        )


def build_fused_loss(kind: str) -> FusedLoss:
    """`loss(hidden, head_weight, labels)`, the mean over target tokens as transformers'
    ForCausalLMLoss takes it (labels shifted inside, -100 ignored)."""
    check_fused_loss(kind)
    try:
        if kind == "liger":
            from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        else:
            from cut_cross_entropy import linear_cross_entropy
    except ImportError as exc:
        raise StorygenError(
            f"model.fused_loss={kind} needs the {FUSED_LOSSES[kind]} package ({exc}); "
            "install it with `pip install 'storygen[fused-loss]'` on a GPU machine."
        ) from None

    if kind == "liger":
        liger = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE_INDEX, reduction="mean")

        def loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            # liger casts under autocast itself (as torch's own matmul would)
            flat = hidden[:, :-1].reshape(-1, hidden.size(-1))
            return liger(weight, flat, labels[:, 1:].reshape(-1))

        return loss

    def cce_loss(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # CCE ignores autocast: cast both sides as the plain path's autocast matmul would
        if torch.is_autocast_enabled(hidden.device.type):
            dtype = torch.get_autocast_dtype(hidden.device.type)
            hidden, weight = hidden.to(dtype), weight.to(dtype)
        elif hidden.dtype != weight.dtype:
            hidden = hidden.to(weight.dtype)
        return linear_cross_entropy(hidden, weight, labels, ignore_index=IGNORE_INDEX, shift=True)

    return cce_loss


def split_backbone(backbone: nn.Module) -> tuple[nn.Module, nn.Linear]:
    """The decoder stack (returns `last_hidden_state`, final norm included) and the LM head,
    for GPT-2, Mistral and their peft (LoRA, QLoRA) wrappers alike."""
    model = backbone.get_base_model() if hasattr(backbone, "get_base_model") else backbone
    head = model.get_output_embeddings()
    if head is None or getattr(head, "bias", None) is not None:
        raise StorygenError(
            f"model.fused_loss needs a bias-free LM head, and {type(model).__name__} has "
            f"{'none' if head is None else 'a bias'}; set model.fused_loss=null."
        )
    return getattr(model, model.base_model_prefix), head


def fused_loss_forward(
    backbone: nn.Module,
    batch: dict[str, torch.Tensor],
    loss_fn: FusedLoss,
    body_forward: Callable | None = None,
) -> torch.Tensor:
    """The loss of `backbone(**batch).loss`, with the LM head and the loss left to `loss_fn`."""
    body, head = split_backbone(backbone)
    inputs = {key: value for key, value in batch.items() if key != "labels"}
    hidden = (body_forward or body)(**inputs).last_hidden_state
    return loss_fn(hidden, head.weight, batch["labels"])
