"""Validate the model that training ends with, whatever the validation interval.

Lightning validates every `val_check_interval` batches; when that does not divide the epoch
(2,000 of 5,000 batches), the last validation, and the checkpoints it saves, come before the
end, and the model a run tests and exports was never validated.
"""

from __future__ import annotations

from lightning.pytorch import Callback, LightningModule, Trainer


class FinalValidation(Callback):
    """At the fit's last batch, ask Lightning to stop: a stop it is asked for validates first
    (as after EarlyStopping), in the same batch, and only once if the interval lands there
    too. The fit ends at that batch anyway, so nothing else changes; a resumed run reaches the
    same last batch and does the same. Lightning honours a stop only once `min_epochs` epochs
    have ended (conf/trainer/default.yaml leaves it unset); storygen.run.plan counts these.
    Read from Lightning 2.5.0 and 2.6.6 (`_TrainingEpochLoop._should_check_val_fx`)."""

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        # Lightning ignores (and logs) a stop before min_epochs epochs and min_steps steps
        allowed = (trainer.min_epochs or 0) <= trainer.current_epoch and (
            trainer.min_steps or 0
        ) <= trainer.global_step
        if allowed and ends_fit(trainer, batch_idx):
            trainer.should_stop = True


def ends_fit(trainer: Trainer, batch_idx: int) -> bool:
    """This batch is the fit's last: its step reached max_steps, or it ends the last epoch."""
    if trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps:
        return True
    epochs = trainer.max_epochs
    last_epoch = epochs not in (None, -1) and trainer.current_epoch + 1 >= epochs
    return last_epoch and batch_idx + 1 >= trainer.num_training_batches
