"""Which model a run tests, exports and reports to a search: `test_ckpt` (conf/train.yaml).

`best`: the checkpoint with the best monitored validation value (ModelCheckpoint's), and that
value is the search's objective. `last`: the model as training left it, validated at the end
of training (callbacks.final_validation), and that validation's `optimized_metric` is the
objective. Either way the number a search optimizes belongs to the model it tests.
"""

from __future__ import annotations

from lightning.pytorch import Trainer

from storygen.errors import StorygenError

TEST_CKPT_CHOICES = ("best", "last")


def check_test_ckpt(test_ckpt: str, optimized_metric: str, trainer: Trainer) -> str:
    """test_ckpt is known, and `best` has a checkpoint callback monitoring optimized_metric:
    the best checkpoint's score is then the objective."""
    if test_ckpt not in TEST_CKPT_CHOICES:
        raise StorygenError(
            f"test_ckpt={test_ckpt!r} is not known; use test_ckpt=best (the best validated "
            "checkpoint) or test_ckpt=last (the model at the end of training)."
        )
    if test_ckpt == "last":
        return test_ckpt
    checkpoint = trainer.checkpoint_callback
    monitor = getattr(checkpoint, "monitor", None)
    if monitor is None:
        raise StorygenError(
            "test_ckpt=best needs a checkpoint callback that monitors a metric "
            "(callbacks.model_checkpoint.monitor), and this run has none; set test_ckpt=last."
        )
    if monitor != optimized_metric:
        raise StorygenError(
            f"test_ckpt=best tests the checkpoint of the best {monitor} "
            f"(callbacks.model_checkpoint.monitor), but optimized_metric={optimized_metric}; "
            f"set callbacks.model_checkpoint.monitor={optimized_metric} (and its mode), or "
            "test_ckpt=last."
        )
    return test_ckpt


def tested_checkpoint(
    trainer: Trainer, test_ckpt: str, last_value: float | None
) -> tuple[str | None, float | None]:
    """After the fit: the checkpoint to test and export (None: the model in memory, as
    training left it) and the objective, the monitored value of that model."""
    checkpoint = trainer.checkpoint_callback
    if test_ckpt == "best" and checkpoint is not None and checkpoint.best_model_path:
        score = checkpoint.best_model_score
        return checkpoint.best_model_path, None if score is None else float(score)
    if test_ckpt == "best":  # no validation saved a checkpoint (e.g. limit_val_batches=0)
        return None, None
    return None, last_value
