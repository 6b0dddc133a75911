"""Checks across config groups that no single component can make alone, run before training."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import CPUAccelerator
from omegaconf import DictConfig, OmegaConf
from transformers import PretrainedConfig, PreTrainedModel

from storygen.errors import StorygenError


def check_precision(trainer: Trainer) -> None:
    if isinstance(trainer.accelerator, CPUAccelerator) and "bf16" in str(trainer.precision):
        raise StorygenError(
            f"trainer.precision={trainer.precision} on a CPU is hundreds of times slower than "
            "fp32; use trainer=cpu (precision 32-true) or train on a GPU (trainer=gpu)."
        )


def check_streaming_across_devices(trainer: Trainer, streaming: bool) -> None:
    """A stream split across devices repeats (see StoryDataModule.train_dataloader), so its
    epoch never ends: validation must come every N steps."""
    if streaming and trainer.world_size > 1 and not isinstance(trainer.val_check_interval, int):
        raise StorygenError(
            f"data.streaming=true on {trainer.world_size} devices trains for trainer.max_steps "
            "without an epoch end, so validation needs a step interval; set "
            "trainer.val_check_interval=<steps> (e.g. 2000)."
        )


def check_context_length(max_length: int, model_config: PretrainedConfig) -> None:
    context = getattr(model_config, "max_position_embeddings", None)
    if context is not None and max_length > context:
        raise StorygenError(
            f"data.max_length={max_length} is above the model's context of {context} tokens; "
            f"set data.max_length<={context}."
        )


def check_packing_isolation(backbone: PreTrainedModel) -> None:
    """Packing is only right if packed stories cannot see each other: try it on two stories.

    Each story's logits packed behind the other must equal its logits alone, in a batch of two
    rows as training has them. Models whose attention ignores position_ids (ALiBi ones such as
    BLOOM) fail, as does flash_attention_2 in transformers, which only separates the stories of
    a batch of one row.
    """
    device = next(backbone.parameters()).device
    first = torch.tensor([11, 12, 13, 14, 15], device=device)
    second = torch.tensor([21, 22, 23, 24], device=device)
    rows = torch.stack([torch.cat([first, second]), torch.cat([second, first])])
    position_ids = torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3], [0, 1, 2, 3, 0, 1, 2, 3, 4]])
    position_ids = position_ids.to(device)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            alone = [
                backbone(input_ids=story[None], use_cache=False).logits[0].float()
                for story in (second, first)
            ]
            packed = backbone(input_ids=rows, position_ids=position_ids, use_cache=False).logits
    finally:
        backbone.train(was_training)
    alone = torch.cat(alone)
    packed = torch.cat([packed[0, 5:], packed[1, 4:]]).float()
    # fp32 agrees to ~1e-6; bf16/fp16 arithmetic (4-bit layers) differs by rounding alone
    tolerance = 2e-2 if computes_in_half_precision(backbone) else 1e-4
    gap = (alone - packed).abs().max().item()
    if gap > tolerance * max(1.0, alone.abs().max().item()):
        attention = getattr(backbone.config, "_attn_implementation", "?")
        raise StorygenError(
            f"data.packing=true, but {type(backbone).__name__} (attention {attention}) lets "
            f"packed stories attend to each other (logits differ by {gap:.2g}); set "
            "data.packing=false, or use a model whose attention takes position_ids: GPT-2, "
            "Llama, Mistral with model.backbone.attn_implementation=sdpa (or eager)."
        )


def computes_in_half_precision(backbone: PreTrainedModel) -> bool:
    """bf16/fp16 weights, or 4-bit layers that compute in bf16/fp16."""
    half = (torch.bfloat16, torch.float16)
    return any(p.dtype in half for p in backbone.parameters()) or any(
        getattr(module, "compute_dtype", None) in half for module in backbone.modules()
    )


# Lightning's own names for a checkpoint to resume from; `last` with no last.ckpt starts afresh.
CHECKPOINT_KEYWORDS = ("last", "best", "hpc")


def check_checkpoint(ckpt_path: str | None) -> None:
    """A checkpoint given to resume or test from exists and is a Lightning checkpoint, checked
    before anything is built or written (mmap reads only its index, not a 7B model's weights)."""
    if ckpt_path is None or str(ckpt_path) in CHECKPOINT_KEYWORDS:
        return
    path = Path(str(ckpt_path))
    if not path.is_file():
        raise StorygenError(
            f"ckpt_path={ckpt_path} does not exist; pass a checkpoint file "
            "(<run dir>/checkpoints/last.ckpt), or ckpt_path=last with hydra.run.dir=<run dir>."
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError:
        return  # a torch file holding objects weights_only refuses to load: Lightning decides
    except Exception:  # not a torch zip file at all: RuntimeError, EOFError, ...
        checkpoint = None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise StorygenError(
            f"ckpt_path={ckpt_path} is not a Lightning checkpoint; pass a .ckpt file that "
            "storygen.train wrote (<run dir>/checkpoints/last.ckpt)."
        )


def check_optimizer(optimizer_factory: Callable) -> None:
    """Build the configured optimizer once on a dummy weight, so a bad setting (`lr=abc`) is
    named before the model trains rather than as a traceback from inside the fit.

    A partial's keywords name the bad key; a builder function keeps its settings in its body,
    so its message names the function instead."""
    settings = getattr(optimizer_factory, "keywords", None) or {}
    try:
        optimizer_factory([torch.nn.Parameter(torch.zeros(1))])
    except (TypeError, ValueError) as exc:
        for key, value in settings.items():
            if isinstance(value, str):
                raise StorygenError(
                    f"model.optimizer.{key}={value!r} is not a number; set "
                    f"model.optimizer.{key}=<number> (e.g. model.optimizer.lr=3e-4)."
                ) from None
        factory = getattr(optimizer_factory, "func", optimizer_factory)
        name = f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', factory)}"
        shown = ", ".join(f"{key}={value!r}" for key, value in settings.items())
        raise StorygenError(
            f"model.optimizer ({name}{f' with {shown}' if shown else ''}) fails on a test "
            f"weight: {exc}; fix the setting it names."
        ) from None


def check_trains_some_steps(trainer: Trainer) -> None:
    """A fit of zero steps would test and export the random initial weights as if trained."""
    for key, value in (
        ("trainer.max_epochs", trainer.max_epochs),
        ("trainer.max_steps", trainer.max_steps),
        ("trainer.limit_train_batches", trainer.limit_train_batches),
    ):
        if value == 0:
            raise StorygenError(
                f"{key}={value} trains no step, so the run would test and export untrained "
                f"weights; set {key} to at least 1 (or train=false ckpt_path=<checkpoint> to "
                "test a trained model)."
            )


def check_trained(trainer: Trainer) -> None:
    """After the fit: it took at least one optimizer step (or was stopped by the user)."""
    if trainer.global_step == 0 and not trainer.interrupted:
        raise StorygenError(
            "the fit ended without a single optimizer step (no training batch, or a limit such "
            "as trainer.max_time reached first); nothing trained, so nothing is tested or "
            "exported. Check trainer.* limits and the train split's size."
        )


@dataclass(frozen=True)
class Range:
    """The numbers an option takes: `whole` numbers or any, from `low` (inclusive unless
    `above`) up to `high` (inclusive); `null` allowed where `optional`."""

    low: float
    high: float = math.inf
    whole: bool = True
    above: bool = False
    optional: bool = False
    example: str = "1"

    def admits(self, value: object) -> bool:
        if value is None:
            return self.optional
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if self.whole and not isinstance(value, int):
            return False
        low_ok = value > self.low if self.above else value >= self.low
        return low_ok and value <= self.high

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        low = f"above {self.low:g}" if self.above else f"of at least {self.low:g}"
        high = "" if self.high == math.inf else f" and at most {self.high:g}"
        return f"{kind} {low}{high}{' (or null)' if self.optional else ''}"


# the sampling settings of generation, wherever a command generates (conf/generation/)
GENERATION_RANGES = {
    "max_new_tokens": Range(1, optional=True, example="200"),
    "temperature": Range(0, whole=False, above=True, example="0.8"),
    "top_p": Range(0, 1, whole=False, above=True, example="0.95"),
    "top_k": Range(0, example="50"),
    "repetition_penalty": Range(0, whole=False, above=True, example="1.0"),
}
# Every count, size and rate a training run takes, checked before anything is built.
# trainer.val_check_interval and limit_*_batches take a count or a fraction: check_fractions.
# Checked where they are read, before any model too: data.max_length (StoryFormat), data.corpus.*
# (each corpus's settings), trainer.val_check_interval against the epoch (run/plan.py).
TRAIN_RANGES = {
    "data.batch_size": Range(1, example="8"),
    "data.eval_batch_size": Range(1, optional=True, example="16"),
    "data.num_workers": Range(0, example="2"),
    "data.num_proc": Range(1, optional=True, example="4"),
    "data.max_train_samples": Range(0, optional=True, example="10000"),
    "data.max_eval_samples": Range(0, optional=True, example="1000"),
    "data.shuffle_buffer": Range(1, example="10000"),
    "trainer.max_epochs": Range(-1, optional=True, example="3"),
    "trainer.min_epochs": Range(0, optional=True, example="1"),
    "trainer.max_steps": Range(-1, example="1000"),
    "trainer.accumulate_grad_batches": Range(1, example="4"),
    "trainer.check_val_every_n_epoch": Range(1, optional=True, example="1"),
    "trainer.log_every_n_steps": Range(1, example="10"),
    "trainer.gradient_clip_val": Range(0, whole=False, optional=True, example="1.0"),
    "model.optimizer.lr": Range(0, whole=False, above=True, example="2e-4"),
    "model.optimizer.weight_decay": Range(0, whole=False, example="0.01"),
    "model.scheduler.num_warmup_steps": Range(0, example="5"),
    "model.backbone.lora.r": Range(1, example="16"),
    "model.backbone.lora.lora_alpha": Range(0, whole=False, above=True, example="16"),
    "model.backbone.lora.lora_dropout": Range(0, 1, whole=False, example="0.05"),
    "callbacks.story_metrics.num_prompts": Range(0, example="8"),
    "callbacks.story_metrics.num_test_prompts": Range(0, optional=True, example="32"),
    "callbacks.story_metrics.batch_size": Range(1, example="8"),
    **{f"callbacks.story_metrics.generation.{k}": r for k, r in GENERATION_RANGES.items()},
}
# storygen.evaluate's and storygen.generate's
EVALUATE_RANGES = {
    "num_prompts": Range(1, example="64"),
    "batch_size": Range(1, example="16"),
    **{f"generation.{key}": rule for key, rule in GENERATION_RANGES.items()},
}
GENERATE_RANGES = {f"generation.{key}": rule for key, rule in GENERATION_RANGES.items()}
# trainer options that take a count of batches (int) or a fraction of them (float)
FRACTION_KEYS = (
    "trainer.val_check_interval",
    "trainer.limit_train_batches",
    "trainer.limit_val_batches",
    "trainer.limit_test_batches",
)


def config_values(cfg: DictConfig, keys: Iterable[str]) -> dict[str, object]:
    """The values of these dotted keys that the config has (a key it lacks is left out)."""
    absent = object()
    values = {key: OmegaConf.select(cfg, key, default=absent) for key in keys}
    return {key: value for key, value in values.items() if value is not absent}


def check_ranges(values: Mapping[str, object], ranges: Mapping[str, Range]) -> None:
    """Each option given (`values`: dotted key -> value, absent keys left out) is in range."""
    for key, rule in ranges.items():
        if key not in values or rule.admits(values[key]):
            continue
        value = values[key]
        if isinstance(value, str):
            raise StorygenError(
                f"{key}={value!r} is not a number; set {key}=<number>, {rule.describe()} "
                f"(e.g. {key}={rule.example})."
            )
        raise StorygenError(
            f"{key}={value!r} must be {rule.describe()}; set e.g. {key}={rule.example}."
        )


def check_fractions(values: Mapping[str, object]) -> None:
    """A count of batches (a whole number, at least 1; 0 for a limit) or a fraction of them in
    (0, 1]; val_check_interval may also be a time (a string), which Lightning reads."""
    for key in FRACTION_KEYS:
        if key not in values or values[key] is None:
            continue
        value = values[key]
        interval = key == "trainer.val_check_interval"
        if interval and isinstance(value, str):
            continue
        lowest = 1 if interval else 0
        count = isinstance(value, int) and not isinstance(value, bool) and value >= lowest
        fraction = isinstance(value, float) and (0 < value <= 1 or (value == 0 and not interval))
        if not (count or fraction):
            raise StorygenError(
                f"{key}={value!r} must be a whole number of batches (at least {lowest}) or a "
                f"fraction of the epoch in {'(0' if interval else '[0'}, 1.0]; set e.g. "
                f"{key}={0.4 if interval else 1.0}."
            )
