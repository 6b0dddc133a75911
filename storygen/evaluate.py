"""Evaluate a trained model's stories: `python -m storygen.evaluate ckpt_path=... [split=test]`.

Writes `metrics.json`, `generations.jsonl` and `lengths.png` (generated vs reference word
counts) into the evaluate run's output dir.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the imports: a dependency out of range is one line, and
    # tcmalloc for CPU runs (LD_PRELOAD acts only at process start)
    from storygen.environment.allocator import preload_fast_allocator
    from storygen.environment.versions import exit_on_unsupported_versions

    exit_on_unsupported_versions()
    preload_fast_allocator()

import json
import logging
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric

from storygen.environment.resolvers import CONF_DIR
from storygen.environment.shutdown import exit_quickly
from storygen.errors import StorygenError, exit_on_user_error
from storygen.metrics.plots import plot_lengths
from storygen.metrics.rouge import as_conventions
from storygen.metrics.scoring import generate_and_score, story_records, write_generations
from storygen.models.module import count_target_tokens, model_inputs
from storygen.models.trained import (
    check_exists,
    load_for_generation,
    model_overridden,
    saved_run_config,
)
from storygen.run.checks import EVALUATE_RANGES, check_ranges, config_values

log = logging.getLogger(__name__)


@torch.no_grad()
def mean_loss(backbone, dataloader) -> float:
    """Token-weighted mean loss over a split, summed as StoryLM's test stage sums it (a
    MeanMetric over the same batches), without a KV cache."""
    loss = MeanMetric()
    backbone.eval()
    device = next(backbone.parameters()).device
    for batch in dataloader:
        batch = {key: value.to(device) for key, value in batch.items()}
        loss.update(
            backbone(**model_inputs(batch)).loss.cpu(),
            weight=count_target_tokens(batch["labels"]).cpu(),
        )
    return float(loss.compute()) if loss.update_count else float("nan")


def data_config(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """The data the checkpoint's run trained on, with this command's `data.*` overrides merged
    in; `data=...` or `experiment=...` on the command line replaces it (as does a checkpoint
    without its run's `.hydra/config.yaml`)."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    path = check_exists(cfg.ckpt_path)
    run_cfg = saved_run_config(path) if path.is_file() else None
    if run_cfg is None or any(o.key_or_group in ("data", "experiment") for o in parsed):
        return cfg.data
    for override in parsed:
        key = override.key_or_group
        if not key.startswith("data."):
            continue
        if override.is_delete():
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(run_cfg, parent)
            if node is not None and leaf in node:
                del node[leaf]
        else:
            OmegaConf.update(run_cfg, key, OmegaConf.select(cfg, key), merge=False)
    return run_cfg.data


def evaluate(cfg: DictConfig, out_dir: Path, overrides: list[str]) -> dict[str, float]:
    if cfg.split not in ("validation", "test"):
        raise StorygenError(
            f"split={cfg.split!r} is not known; use split=validation or split=test."
        )
    check_ranges(config_values(cfg, EVALUATE_RANGES), EVALUATE_RANGES)
    backbone, tokenizer, precision = load_for_generation(
        cfg.ckpt_path, cfg.model, cfg.base_model, cfg.precision, model_overridden(overrides)
    )
    datamodule = instantiate(data_config(cfg, overrides), tokenizer=tokenizer)
    datamodule.setup()
    loader = datamodule.test_dataloader() if cfg.split == "test" else datamodule.val_dataloader()
    prompts = datamodule.story_prompts(cfg.split, cfg.num_prompts)
    conventions = as_conventions(cfg.get("rouge"))
    with precision.forward_context():  # as the run's test stage generated and scored
        stories, metrics = generate_and_score(
            backbone,
            tokenizer,
            prompts,
            instantiate(cfg.generation),
            max_length=datamodule.story_format.max_length,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
            rouge=conventions,
        )
        metrics["loss"] = mean_loss(backbone, loader)

    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_generations(out_dir / "generations.jsonl", story_records(prompts, stories, conventions))
    plot_lengths([s.text for s in stories], [p.reference for p in prompts], out_dir / "lengths.png")
    return metrics


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    with exit_on_user_error():
        out_dir = Path(cfg.paths.output_dir)
        metrics = evaluate(cfg, out_dir, list(HydraConfig.get().overrides.task))
        width = max(map(len, metrics))
        print("\n".join(f"{name:<{width}} {value:.4f}" for name, value in metrics.items()))
        print(f"wrote {out_dir}/metrics.json, generations.jsonl, lengths.png")


if __name__ == "__main__":
    exit_quickly()
    main()
