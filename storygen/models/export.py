"""Export a trained backbone as a Hugging Face directory that plain transformers/peft load.

LoRA runs export the peft adapter (adapter_config.json + adapter_model.safetensors) with the
tokenizer; optionally the adapter merged into a full-precision copy of the base as well.
Full fine-tuning exports the whole model. Each directory is written beside its place and moved
there only when complete (and, with a merge, checked): a refused merge or a crash leaves an
earlier export as it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import PreTrainedTokenizerBase

from storygen.errors import StorygenError
from storygen.models.loader import load_adapter

log = logging.getLogger(__name__)

# fp32 merges agree with the unmerged adapter to ~1e-5; more means the merge went wrong.
MERGE_TOLERANCE = 1e-3
MERGE_CHECK_TEXT = "Once upon a time, a little fox found a shiny key in the snow."


@dataclass(frozen=True)
class ExportResult:
    model_dir: Path
    merged_dir: Path | None = None
    merge_max_abs_diff: float | None = None


def export_backbone(
    backbone: torch.nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    merge: bool = False,
) -> ExportResult:
    """Write `out_dir/adapter` (LoRA) or `out_dir/model` (full), and `out_dir/merged` if asked."""
    if not is_peft_model(backbone):
        with staged(out_dir / "model") as staging:
            _save(backbone, tokenizer, staging)
        return ExportResult(model_dir=out_dir / "model")
    merged_dir, max_diff = None, None
    with staged(out_dir / "adapter") as staging:
        _save(backbone, tokenizer, staging)
        if merge:  # inside: a refused merge leaves the earlier adapter in place too
            merged_dir, max_diff = merge_adapter(staging, tokenizer, out_dir / "merged")
    return ExportResult(out_dir / "adapter", merged_dir, max_diff)


def is_peft_model(backbone: torch.nn.Module) -> bool:
    """A peft model (LoRA); peft is imported only by LoRA runs, so a model built without it
    cannot be one, and a full fine-tune's export does not load it."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(backbone, peft.PeftModel)


@contextmanager
def staged(directory: Path) -> Iterator[Path]:
    """A fresh directory beside `directory` that replaces it when the block completes, and is
    removed, leaving `directory` as it was, when the block raises."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = directory.with_name(f".{directory.name}.staging-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replaced = directory.with_name(f".{directory.name}.replaced-{os.getpid()}")
    if directory.exists():
        directory.rename(replaced)
    staging.rename(directory)
    shutil.rmtree(replaced, ignore_errors=True)
    log.debug("Exported %s", directory)  # the commands that export say where, once


def _save(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, directory: Path) -> None:
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


@torch.no_grad()
def merge_adapter(
    adapter_dir: Path, tokenizer: PreTrainedTokenizerBase, merged_dir: Path
) -> tuple[Path, float]:
    """Merge the adapter into an fp32 copy of its base; check logits against the adapter model.

    The base is loaded unquantized: a QLoRA adapter trained on 4-bit weights merges into the
    full-precision weights, the usual way to serve it.
    """
    adapter_model = load_adapter(adapter_dir)
    batch = tokenizer(MERGE_CHECK_TEXT, return_tensors="pt")
    expected = adapter_model(**batch).logits
    if not torch.isfinite(expected).all():
        raise StorygenError(
            "the adapter gives NaN or infinite logits on its base, so there is "
            "nothing sound to merge: its weights diverged; export a checkpoint from before the "
            "divergence (ckpt_path=<run>/checkpoints/<earlier>.ckpt) or retrain with a lower "
            "model.optimizer.lr."
        )
    merged = adapter_model.merge_and_unload()
    actual = merged(**batch).logits
    max_diff = float((expected - actual).abs().max())
    if not max_diff <= MERGE_TOLERANCE:  # not `>`: a NaN difference compares False to both
        raise StorygenError(
            f"the merged model's logits differ from the adapter model's by {max_diff:.2e} "
            f"(more than {MERGE_TOLERANCE:.0e}); the adapter does not fit its base."
        )
    with staged(merged_dir) as staging:
        _save(merged, tokenizer, staging)
    log.info("Merged into %s (max |logit diff| %.2e)", merged_dir, max_diff)
    return merged_dir, max_diff
