"""Every private name of Lightning that storygen uses, reached from here and nowhere else.

Exact resume and a stop at an optimizer step (callbacks.resilience) and the CSV log that a
resumed run continues (callbacks.loggers) need loop and logger internals Lightning has no
public API for. Each comment says which Lightning releases the name was read from (2.5.0,
the declared floor, to 2.6.6). `check_lightning_internals` runs as a fit starts: if a name has
gone in the installed Lightning, the run stops with one message naming the version, rather
than resume silently inexact.
"""

from __future__ import annotations

from collections.abc import Iterable

import lightning
from lightning.fabric.utilities import data as fabric_data
from lightning.pytorch import Trainer
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loops import loop as loops

from storygen.errors import StorygenError

# (owner, dotted attribute path) for the names that exist before a Trainer does
MODULE_NAMES: tuple[tuple[object, str], ...] = (
    # 2.0-2.6.6: the epoch handed to a loader's sampler, as Lightning does each epoch
    (fabric_data, "_set_sampler_epoch"),
    # 2.0-2.6.6: the base loop's setter, which clears the flag on every inner loop too (the fit
    # loop's own setter does more)
    (loops, "_Loop.restarting.fset"),
    # 2.0-2.6.6: called by the writer's constructor; the appending writer overrides it
    (ExperimentWriter, "_check_log_dir_exists"),
)

# dotted paths from a Trainer
TRAINER_NAMES: tuple[str, ...] = (
    # 2.5-2.6.6 (absent in 2.4): ends a restart within an epoch that has already ended
    "fit_loop.reset_restart_stage",
    "fit_loop.epoch_loop.reset_restart_stage",
    "fit_loop.epoch_loop.val_loop.reset_restart_stage",
    # 2.0-2.6.6: the train loaders and the fetcher iterating them
    "fit_loop._combined_loader",
    "fit_loop._data_fetcher",
    # 2.0-2.6.6: set, Lightning stops cleanly once the step's metrics are logged
    "_signal_connector.received_sigterm",
)

# dotted paths from a CSVLogger: 2.0-2.6.6
CSV_LOGGER_NAMES: tuple[str, ...] = ("_fs", "_experiment")

# dotted paths from a WandbLogger: 2.0-2.6.6 (the `offline` it was given, kept under this name;
# the arguments of its `wandb.init`)
WANDB_LOGGER_NAMES: tuple[str, ...] = ("_offline", "_wandb_init")


def _missing(owner: object, paths: Iterable[str]) -> list[str]:
    """The dotted paths that do not resolve on `owner`."""
    missing = []
    for path in paths:
        value = owner
        for part in path.split("."):
            if not hasattr(value, part):
                missing.append(path)
                break
            value = getattr(value, part)
    return missing


def check_lightning_internals(trainer: Trainer | None = None) -> None:
    """Stop with one message if the installed Lightning lacks a private name storygen uses."""
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    missing = [
        f"{owner.__name__}.{path}" for owner, path in MODULE_NAMES if _missing(owner, [path])
    ]
    if trainer is not None:
        missing += [f"Trainer.{path}" for path in _missing(trainer, TRAINER_NAMES)]
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                missing += [f"CSVLogger.{p}" for p in _missing(logger, CSV_LOGGER_NAMES)]
            if isinstance(logger, WandbLogger):
                missing += [f"WandbLogger.{p}" for p in _missing(logger, WANDB_LOGGER_NAMES)]
    if missing:
        raise StorygenError(
            f"lightning {lightning.__version__} lacks {', '.join(missing)}, which storygen's "
            "exact resume needs (read from lightning 2.5.0 to 2.6.6); install a release in that "
            "range (pip install 'lightning>=2.5,<2.7') or report the version."
        )


def set_sampler_epoch(loader: object, epoch: int) -> None:
    """Lightning's own `set_epoch` on a loader's samplers."""
    fabric_data._set_sampler_epoch(loader, epoch)


def end_restart(trainer: Trainer) -> None:
    """Leave the fit loop and its inner loops as they are before an uninterrupted epoch."""
    fit_loop = trainer.fit_loop
    loops._Loop.restarting.fset(fit_loop, False)  # and every inner loop
    for loop in (fit_loop, fit_loop.epoch_loop, fit_loop.epoch_loop.val_loop):
        loop.reset_restart_stage()


def train_loaders(trainer: Trainer) -> list:
    """The fit's train loaders, once Lightning has built them."""
    combined = trainer.fit_loop._combined_loader
    return combined.flattened if combined is not None else []


def restart_train_iterator(trainer: Trainer) -> None:
    """Iterate the train loaders anew (after their epoch or position was set)."""
    iter(trainer.fit_loop._data_fetcher)


def stop_after_this_step(trainer: Trainer) -> None:
    """Lightning's clean exit, as on SIGTERM: raised once this step's metrics are logged."""
    trainer._signal_connector.received_sigterm = True


def wandb_logger_is_offline(logger: object) -> bool:
    """Whether a Lightning W&B logger logs offline (it keeps no public flag for it)."""
    return logger._offline


def drop_unset_wandb_anonymous(logger: object) -> None:
    """Lightning passes `anonymous=None` to `wandb.init` when it was not asked for, and newer
    W&B releases warn that the setting is deprecated whenever it is passed at all (0.31 does;
    `wandb.init`'s own default is None in the releases before)."""
    init_arguments = getattr(logger, "_wandb_init", {})  # a missing name: the check says so
    if "anonymous" in init_arguments and init_arguments["anonymous"] is None:
        del init_arguments["anonymous"]
