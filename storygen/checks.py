"""Checks across config groups that no single component can make alone, run before training."""

from __future__ import annotations

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from transformers import PretrainedConfig, PreTrainedModel

from storygen.errors import StorygenError


def check_precision(trainer: Trainer) -> None:
    if isinstance(trainer.accelerator, CPUAccelerator) and "bf16" in str(trainer.precision):
        raise StorygenError(
            f"trainer.precision={trainer.precision} on a CPU is hundreds of times slower than "
            "fp32; use trainer=cpu (precision 32-true) or train on a GPU (trainer=gpu)."
        )


def check_context_length(max_length: int, model_config: PretrainedConfig) -> None:
    context = getattr(model_config, "max_position_embeddings", None)
    if context is not None and max_length > context:
        raise StorygenError(
            f"data.max_length={max_length} is above the model's context of {context} tokens; "
            f"set data.max_length<={context}."
        )


def check_packing_isolation(backbone: PreTrainedModel, tolerance: float = 1e-4) -> None:
    """Packing is only right if packed stories cannot see each other: try it on two stories.

    The second story's logits packed behind the first must equal its logits alone. Models
    whose attention ignores position_ids (ALiBi ones such as BLOOM) fail, as would any
    attention that cannot separate sequences.
    """
    device = next(backbone.parameters()).device
    first = torch.tensor([[11, 12, 13, 14, 15]], device=device)
    second = torch.tensor([[21, 22, 23, 24]], device=device)
    position_ids = torch.cat([torch.arange(5), torch.arange(4)]).unsqueeze(0).to(device)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            alone = backbone(input_ids=second, use_cache=False).logits.float()
            packed = (
                backbone(
                    input_ids=torch.cat([first, second], dim=1),
                    position_ids=position_ids,
                    use_cache=False,
                )
                .logits[:, 5:]
                .float()
            )
    finally:
        backbone.train(was_training)
    gap = (alone - packed).abs().max().item()
    if gap > tolerance * max(1.0, alone.abs().max().item()):
        attention = getattr(backbone.config, "_attn_implementation", "?")
        raise StorygenError(
            f"data.packing=true, but {type(backbone).__name__} (attention {attention}) lets "
            f"packed stories attend to each other (logits differ by {gap:.2g}); set "
            "data.packing=false, or use a model whose attention takes position_ids "
            "(GPT-2, Llama, Mistral with sdpa, eager or flash_attention_2)."
        )
