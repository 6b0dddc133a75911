"""The job's side of a trial: report the optimized metric at every validation, stop when the
pruner says so.

optuna-integration's PyTorchLightningPruningCallback reports at step = epoch, so a run that
validates several times an epoch (`val_check_interval`) would report once per epoch; this
one reports at the global step of each validation, and records the prune in the study
itself, so the sweeper (which may be on another machine) only skips the trial.
"""

from __future__ import annotations

import lightning as L
import optuna
from optuna.trial import TrialState

from storygen.run.record import RunPruned
from storygen.sweeps.study import open_storage


def open_trial(
    url: str, study_name: str, number: int, pruner: optuna.pruners.BasePruner | None
) -> optuna.Trial:
    """The running trial `number` of the study, as the sweeper asked it."""
    storage = open_storage(url)
    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(study_name), number
    )
    return optuna.Trial(study, trial_id)


class OptunaPruning(L.Callback):
    """Report `monitor` after each validation; on the pruner's word mark the trial pruned
    and stop the run (raises RunPruned, which run.json records as `pruned`)."""

    def __init__(self, trial: optuna.Trial, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        step = trainer.global_step
        prune = False
        if trainer.is_global_zero:  # DDP ranks share the trial; rank 0 reports for them
            self.trial.report(float(trainer.callback_metrics[self.monitor]), step=step)
            prune = self.trial.should_prune()
            if prune:
                self.trial.study.tell(self.trial, state=TrialState.PRUNED)
        if trainer.strategy.broadcast(prune):
            raise RunPruned(f"pruned by Optuna at step {step} ({self.monitor} reported)")
