"""Export a trained backbone as a Hugging Face directory that plain transformers/peft load.

LoRA runs export the peft adapter (adapter_config.json + adapter_model.safetensors) with the
tokenizer; optionally the adapter merged into a full-precision copy of the base as well.
Full fine-tuning exports the whole model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import PeftModel
from transformers import PreTrainedTokenizerBase

from storygen.models.loader import load_adapter
from storygen.run.errors import StorygenError

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
    if not isinstance(backbone, PeftModel):
        model_dir = _save(backbone, tokenizer, out_dir / "model")
        return ExportResult(model_dir=model_dir)
    adapter_dir = _save(backbone, tokenizer, out_dir / "adapter")
    if not merge:
        return ExportResult(model_dir=adapter_dir)
    merged_dir, max_diff = merge_adapter(adapter_dir, tokenizer, out_dir / "merged")
    return ExportResult(adapter_dir, merged_dir, max_diff)


def _save(model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    log.info("Exported %s", directory)
    return directory


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
            f"the adapter in {adapter_dir} gives NaN or infinite logits on its base, so there is "
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
    merged.save_pretrained(merged_dir)
    tokenizer.save_pretrained(merged_dir)
    log.info("Merged into %s (max |logit diff| %.2e)", merged_dir, max_diff)
    return merged_dir, max_diff
