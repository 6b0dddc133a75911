"""Train a story model: `python -m storygen.train [group=option ...] [key=value ...]`.

Compose the config (conf/train.yaml), instantiate model -> data -> callbacks -> loggers
-> trainer, fit, test, report. Returns the `optimized_metric` for Hydra sweepers.
"""

from __future__ import annotations

if __name__ == "__main__":  # before the imports: a dependency out of range is one line, and
    # tcmalloc for CPU runs (LD_PRELOAD acts only at process start)
    from storygen.environment.allocator import preload_fast_allocator
    from storygen.environment.versions import exit_on_unsupported_versions

    exit_on_unsupported_versions()
    preload_fast_allocator()

import logging
import sys
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from storygen.callbacks.final_validation import FinalValidation
from storygen.callbacks.loggers import SummarizingWandbLogger
from storygen.environment.devices import enable_tf32
from storygen.environment.resolvers import CONF_DIR
from storygen.environment.secrets import loggable_config, mask_secrets
from storygen.environment.shutdown import exit_quickly
from storygen.environment.wandb_run import dashboard_keys
from storygen.errors import exit_on_user_error
from storygen.models.accounting import count_parameters
from storygen.models.export import export_backbone
from storygen.run.checks import (
    FRACTION_KEYS,
    TRAIN_RANGES,
    check_checkpoint,
    check_context_length,
    check_fractions,
    check_optimizer,
    check_packing_isolation,
    check_precision,
    check_ranges,
    check_streaming_across_devices,
    check_trained,
    check_trains_some_steps,
    config_values,
)
from storygen.run.plan import plan_training
from storygen.run.record import RECORD_FILE, RunPruned, RunRecord
from storygen.run.slurm import JobRequeued, requeue_when_stopped, resume_path
from storygen.run.summary import summarize_run, wandb_run_dir
from storygen.run.tested import check_test_ckpt, tested_checkpoint

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list:
    """Instantiate every entry of a group like `callbacks` or `logger` (a dict of configs)."""
    return [instantiate(node) for node in (group or {}).values() if node and "_target_" in node]


def train(cfg: DictConfig, record: RunRecord | None = None) -> dict[str, float]:
    """Fit, test and export; `run.json` records the run whether it completes or fails (in
    `record` where one is given: its `objective` is what a sweeper gets)."""
    record = record or RunRecord(
        task_name=cfg.task_name,
        overrides=job_overrides(),
        optimized_metric=cfg.optimized_metric,
    )
    loggers: list = []
    try:
        return _train(cfg, record, loggers)
    except BaseException as exc:
        record.fail(exc)
        if record.status == "interrupted":
            log.warning("Resume with: %s", resume_command(record, cfg.paths.output_dir))
        raise
    finally:
        record.finish()
        if rank_zero_only.rank == 0:  # DDP ranks share the run dir; rank 0 speaks for them
            record.write(cfg.paths.output_dir)
        publish_record(record)
        # Without this, the next job of a multirun would log into this job's W&B run.
        if (wandb := loaded_wandb()) is not None:
            wandb.finish(exit_code=0 if record.status in ("completed", "pruned") else 1)


def _train(cfg: DictConfig, record: RunRecord, loggers: list) -> dict[str, float]:
    log.info("Training %s; run dir %s", run_choices(), cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    # Everything cheap first, so a bad option fails before a 7B model is downloaded.
    check_ranges(config_values(cfg, TRAIN_RANGES), TRAIN_RANGES)
    check_fractions(config_values(cfg, FRACTION_KEYS))
    check_checkpoint(cfg.ckpt_path)
    check_optimizer(instantiate(cfg.model.optimizer))
    tokenizer = instantiate(cfg.model.tokenizer)
    log.info("Building data <%s>", cfg.data._target_)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    callbacks = [*instantiate_group(cfg.get("callbacks")), *trial_pruning(cfg), FinalValidation()]
    loggers += instantiate_group(cfg.get("logger"))
    # plain dicts and lists: Lightning reads `max_time={hours: 23}` only from a dict
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers, _convert_="partial")
    check_precision(trainer)
    if isinstance(trainer.accelerator, CUDAAccelerator):
        enable_tf32()
    check_streaming_across_devices(trainer, datamodule.streaming)
    if cfg.train:
        record.test_ckpt = check_test_ckpt(cfg.test_ckpt, cfg.optimized_metric, trainer)
        check_trains_some_steps(trainer)
        datamodule.trainer = trainer  # as fit attaches it: the data's counts reach the loggers
        plan = plan_training(trainer, datamodule.train_size(), datamodule.batch_size)
        record.plan = plan.as_dict()
        log.info("%s", plan.line())
        if plan.large:
            log.warning("%s", plan.warning())

    log.info("Building model <%s>", cfg.model._target_)
    model = instantiate(cfg.model, tokenizer=tokenizer)
    parameters = count_parameters(model.backbone)
    record.parameters = {"trainable": parameters.trainable, "total": parameters.total}
    log.info("Parameters: %s", parameters)
    check_context_length(datamodule.story_format.max_length, model.backbone.config)
    if datamodule.packing:
        check_packing_isolation(model.backbone)

    for logger in loggers:
        if isinstance(logger, SummarizingWandbLogger):
            logger.save_configs(Path(cfg.paths.output_dir) / ".hydra")
        logger.log_hyperparams(
            loggable_config(cfg) | {"overrides": record.overrides} | dashboard_keys(cfg)
        )
    if cfg.train:
        started = time.perf_counter()
        # a requeued SLURM job resumes from its own last.ckpt (storygen.run.slurm)
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume_path(cfg.ckpt_path))
        record.fit_took(time.perf_counter() - started)
        check_trained(trainer)
        record.train_tokens = int(  # each DDP rank counts its own share
            trainer.strategy.reduce(
                torch.tensor(datamodule.train_tokens, device=trainer.strategy.root_device),
                reduce_op="sum",
            )
        )
        record.metrics |= {key: float(value) for key, value in trainer.callback_metrics.items()}
        tested, record.objective = tested_checkpoint(
            trainer, cfg.test_ckpt, record.metrics.get(cfg.optimized_metric)
        )
    else:
        tested = cfg.ckpt_path  # test=true train=false: the checkpoint given
    if cfg.test:
        # None: the model as training left it (test_ckpt=last)
        trainer.test(model, datamodule=datamodule, ckpt_path=tested)
        record.metrics |= {key: float(value) for key, value in trainer.callback_metrics.items()}
    if cfg.export and cfg.train and trainer.is_global_zero:
        if tested and not cfg.test:  # the test stage loaded it already
            model.load_checkpoint_weights(tested)
        export = export_backbone(
            model.backbone, model.tokenizer, Path(cfg.paths.output_dir) / "export"
        )
        log.info("Exported the trained model to %s", export.model_dir)
        for logger in loggers:
            if isinstance(logger, SummarizingWandbLogger):
                logger.log_export(export.model_dir, trainer.checkpoint_callback)
    log.info(summarize_run(trainer, wandb_run_dir(trainer)))
    return record.metrics


def run_choices() -> str:
    """What this run trains, as the config groups chose it: `model=gpt2_tiny data=tinystories
    (experiment=quickstart)`."""
    if not HydraConfig.initialized():
        return "the composed config"
    choices = HydraConfig.get().runtime.choices
    chosen = " ".join(
        f"{group}={choices[group]}" for group in ("model", "data") if choices.get(group)
    )
    if choices.get("experiment"):
        chosen += f" (experiment={choices['experiment']})"
    return chosen


def trial_pruning(cfg: DictConfig) -> list:
    """In an Optuna search, the callback that reports each validation to this job's trial."""
    if cfg.get("optuna_trial") is None:
        return []
    import optuna

    from storygen.sweeps.study import storage_url
    from storygen.sweeps.trial import OptunaPruning, open_trial

    sweeper = HydraConfig.get().sweeper
    url = storage_url(sweeper.storage, cfg.paths.root_dir, sweeper.study_name)
    pruner = instantiate(sweeper.pruner) if sweeper.get("pruner") else optuna.pruners.NopPruner()
    trial = open_trial(url, sweeper.study_name, cfg.optuna_trial, pruner)
    return [OptunaPruning(trial, cfg.optimized_metric)]


def resume_command(record: RunRecord, output_dir: str) -> str:
    kept = [o for o in record.overrides if not o.startswith(("ckpt_path=", "hydra.run.dir="))]
    return " ".join(
        ["python -m storygen.train", *kept, f"hydra.run.dir={output_dir}", "ckpt_path=last"]
    )


def job_overrides() -> list[str]:
    """The command-line overrides of this job (a sweep's job gets its own combination), as
    typed: an override reading an environment variable (`oc.env`) stays an interpolation
    (reading the list item by item would resolve it), and any secret typed in full is masked."""
    if not HydraConfig.initialized():
        return []
    return mask_secrets(OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=False))


def publish_record(record: RunRecord) -> None:
    """Put the run record in the W&B run's summary, so online comparisons see it too."""
    wandb = loaded_wandb()
    if wandb is not None and wandb.run is not None:
        wandb.run.summary.update(
            {key: value for key, value in record.as_dict().items() if key != "metrics"}
        )


def loaded_wandb():
    """wandb, if a W&B logger imported it: a run logged elsewhere (logger=csv) needs no wandb."""
    return sys.modules.get("wandb")


def in_sweep() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    record = RunRecord(
        task_name=cfg.task_name, overrides=job_overrides(), optimized_metric=cfg.optimized_metric
    )
    try:
        with exit_on_user_error(), requeue_when_stopped():
            train(cfg, record)
    except (Exception, SystemExit) as exc:
        if not in_sweep() or isinstance(exc, JobRequeued):
            raise
        if isinstance(exc, RunPruned):  # the trial is marked pruned in its study already
            log.info("%s", exc)
            return float("nan")
        # One failed job must not end the sweep: it is recorded in run.json, logged here
        # (traceback included, in the job's log file) and reported as NaN to the sweeper.
        if not isinstance(exc, SystemExit):
            log.exception("This job failed")
        log.error("Job failed; the sweep goes on. See %s", Path(cfg.paths.output_dir) / RECORD_FILE)
        return float("nan")
    return record.objective


if __name__ == "__main__":
    exit_quickly()
    main()
