"""StoryLM: the LightningModule around a Hugging Face causal LM.

It owns the backbone and its tokenizer, computes the loss on prompt-masked labels, and
builds the optimizer and scheduler from the partials the config injects. Story metrics
(generation, ROUGE) live in `storygen.callbacks.story_metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MeanMetric
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from storygen.data.formatting import IGNORE_INDEX
from storygen.errors import StorygenError
from storygen.models.fused_loss import (
    FusedLoss,
    build_fused_loss,
    check_fused_loss,
    fused_loss_forward,
    split_backbone,
)

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class StoryLM(LightningModule):
    def __init__(
        self,
        backbone: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        compile_backbone: bool = False,
        fused_loss: str | None = None,
    ) -> None:
        super().__init__()
        # The optimizer and scheduler partials live in the run's config, not the checkpoint:
        # checkpoints stay loadable with torch.load(weights_only=True).
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        # the LM head and the loss in one GPU kernel (models/fused_loss.py); null: plain
        check_fused_loss(fused_loss)
        self.fused_loss = fused_loss
        self._fused_loss_fn: FusedLoss | None = None
        # torch.compile the loss forward only: generation's growing KV cache would recompile
        # every step, and compiling the function (not the module) keeps state_dict keys.
        # With a fused loss, the decoder stack alone is compiled (the kernel is Triton already).
        compiled = split_backbone(backbone)[0].forward if fused_loss else backbone.forward
        self.compiled_forward = torch.compile(compiled, dynamic=True) if compile_backbone else None
        # Token-weighted means: a batch of long stories counts for more than one of short ones.
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

    def setup(self, stage: str) -> None:
        """A fused loss on a CPU fails here, before the first step, with the fix."""
        check_fused_loss(self.fused_loss, self.trainer.strategy.root_device)

    def forward(self, **batch: torch.Tensor) -> torch.Tensor:
        if self.fused_loss is not None:
            check_fused_loss(self.fused_loss, batch["input_ids"].device)
            if self._fused_loss_fn is None:
                self._fused_loss_fn = build_fused_loss(self.fused_loss)
            return fused_loss_forward(
                self.backbone, model_inputs(batch), self._fused_loss_fn, self.compiled_forward
            )
        backbone = self.compiled_forward or self.backbone
        return backbone(**model_inputs(batch)).loss

    def model_step(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss over the batch's target tokens, and how many there were."""
        return self(**batch), count_target_tokens(batch["labels"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, _ = self.model_step(batch)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, target_tokens = self.model_step(batch)
        self.val_loss.update(loss, weight=target_tokens)

    def on_validation_epoch_end(self) -> None:
        loss = self.val_loss.compute()
        self.val_loss.reset()
        self.log_dict({"val/loss": loss, "val/ppl": torch.exp(loss)}, prog_bar=True, sync_dist=True)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, target_tokens = self.model_step(batch)
        self.test_loss.update(loss, weight=target_tokens)

    def on_test_epoch_end(self) -> None:
        loss = self.test_loss.compute()
        self.test_loss.reset()
        self.log_dict({"test/loss": loss, "test/ppl": torch.exp(loss)}, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """LoRA runs save only what trains; the frozen (maybe 4-bit) base is rebuilt from config."""
        trainable = self._trainable_names()
        if trainable is not None:
            checkpoint["state_dict"] = {
                key: value for key, value in checkpoint["state_dict"].items() if key in trainable
            }

    def load_state_dict(self, state_dict: dict, strict: bool = True, assign: bool = False):
        trainable = self._trainable_names()
        if trainable is None:
            try:
                return super().load_state_dict(state_dict, strict=strict, assign=assign)
            except RuntimeError as exc:
                detail = " ".join(line.strip() for line in str(exc).splitlines()[:2])
                raise StorygenError(
                    f"the checkpoint does not fit this model ({detail}); "
                    "load it with the model config it was trained with."
                ) from None
        missing, unexpected = (
            sorted(trainable - state_dict.keys()),
            sorted(state_dict.keys() - trainable),
        )
        if missing or unexpected:
            raise StorygenError(
                f"the checkpoint does not fit this model: {len(missing)} trainable weights "
                f"missing (e.g. {missing[:2]}), {len(unexpected)} unexpected (e.g. "
                f"{unexpected[:2]}); load it with the model config it was trained with."
            )
        return super().load_state_dict(state_dict, strict=False, assign=assign)

    def load_checkpoint_weights(self, ckpt_path: str | Path) -> None:
        """Load a Lightning checkpoint's weights (full, or adapter-only onto the rebuilt base)."""
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        self.load_state_dict(checkpoint["state_dict"])

    def _trainable_names(self) -> set[str] | None:
        """Names of trainable weights when some are frozen (adapters); None for full training."""
        names = {name for name, p in self.named_parameters() if p.requires_grad}
        return names if len(names) < sum(1 for _ in self.parameters()) else None

    def configure_optimizers(self) -> dict:
        optimizer = self.optimizer_factory(parameter_groups(self.backbone))
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        total_steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(total_steps):
            total_steps = self.trainer.max_steps
        if total_steps < 1:
            raise StorygenError(
                "the learning-rate schedule needs the number of training steps, and a streamed "
                "dataset has no length; set trainer.max_steps (e.g. trainer.max_steps=10000)."
            )
        scheduler = self.scheduler_factory(optimizer, num_training_steps=int(total_steps))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip fused AdamW's gradients too (`fused: true` on GPUs).

        Lightning's mixed-precision plugin refuses to clip for an optimizer that unscales
        fp16 gradients inside its step, even under bf16 where nothing is scaled. Unscaling
        first (a no-op without a GradScaler) makes clipping correct, and torch's GradScaler
        then steps the fused optimizer with the gradients already unscaled.
        """
        if not gradient_clip_val or not getattr(optimizer, "_step_supports_amp_scaling", False):
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        if scaler is not None:
            scaler.unscale_(optimizer)
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            nn.utils.clip_grad_value_(parameters, gradient_clip_val)
        else:
            nn.utils.clip_grad_norm_(parameters, gradient_clip_val)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A collated batch as the backbone takes it for a loss.

    Packed rows (with `position_ids`) go without their attention mask: transformers keeps
    packed stories apart only when given position_ids, no mask and no KV cache. A loss never
    needs the cache anyway.
    """
    if "position_ids" in batch:
        batch = {key: value for key, value in batch.items() if key != "attention_mask"}
    return batch | {"use_cache": False}


def count_target_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Tokens the loss is averaged over: labels after the shift, minus the masked ones."""
    return (labels[:, 1:] != IGNORE_INDEX).sum()


def parameter_groups(model: nn.Module) -> list[dict]:
    """Decay matrices only: biases and norm weights (1-D tensors) are left undecayed.

    The matrices' group names no weight_decay, so it takes the optimizer's own setting however
    the optimizer is built (a partial, a builder function, a class with its default).
    """
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
