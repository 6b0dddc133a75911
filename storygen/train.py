"""Train a story model: `python -m storygen.train [group=option ...] [key=value ...]`.

Compose the config (conf/train.yaml), instantiate model -> data -> callbacks -> loggers
-> trainer, fit, test, report. Returns the `optimized_metric` for Hydra sweepers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import wandb
from hydra.utils import instantiate
from omegaconf import DictConfig

from storygen.checks import check_context_length, check_packing_isolation, check_precision
from storygen.config import loggable_config, setup_environment
from storygen.errors import exit_on_user_error
from storygen.models.accounting import count_parameters
from storygen.models.export import export_backbone
from storygen.run_summary import summarize_run, wandb_run_dir

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list:
    """Instantiate every entry of a group like `callbacks` or `logger` (a dict of configs)."""
    return [instantiate(node) for node in (group or {}).values() if node and "_target_" in node]


def train(cfg: DictConfig) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)

    # Everything cheap first, so a bad option fails before a 7B model is downloaded.
    tokenizer = instantiate(cfg.model.tokenizer)
    log.info("Building data <%s>", cfg.data._target_)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    check_precision(trainer)

    log.info("Building model <%s>", cfg.model._target_)
    model = instantiate(cfg.model, tokenizer=tokenizer)
    log.info("Parameters: %s", count_parameters(model.backbone))
    check_context_length(datamodule.story_format.max_length, model.backbone.config)
    if datamodule.packing:
        check_packing_isolation(model.backbone)

    try:
        for logger in loggers:
            logger.log_hyperparams(loggable_config(cfg))
        metrics: dict[str, float] = {}
        if cfg.train:
            trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
            metrics |= {key: float(value) for key, value in trainer.callback_metrics.items()}
        if cfg.test:
            best = (
                trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            )
            # the best checkpoint of this fit, else the one given to test (train=false)
            trainer.test(model, datamodule=datamodule, ckpt_path=best or cfg.ckpt_path)
            metrics |= {key: float(value) for key, value in trainer.callback_metrics.items()}
        if cfg.export and cfg.train:
            export = export_backbone(
                model.backbone, model.tokenizer, Path(cfg.paths.output_dir) / "export"
            )
            log.info("Exported the trained model to %s", export.model_dir)
        log.info(summarize_run(trainer, wandb_run_dir(trainer)))
    finally:
        # Without this, the next job of a multirun would log into this job's W&B run.
        wandb.finish()
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    with exit_on_user_error():
        metrics = train(cfg)
    return metrics.get(cfg.optimized_metric)


if __name__ == "__main__":
    setup_environment()
    main()
