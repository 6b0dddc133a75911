"""A console a user can read: the dependencies' messages that no storygen user can act on are
silenced here, each with its reason in a line. Warnings and log records are matched by their
message and the module or logger that makes them; absl's INFO lines and W&B's closing panel by
the logger and the setting that print them, which print nothing else a run needs.

What storygen itself caused is fixed where it was caused (the learning-rate schedule that loaded
bitsandbytes, the loss transformers could not name, the checkpoint saved without `weights_only`,
the `anonymous` W&B setting); this is what is left. A release that words a message differently
or drops it only brings it back, never an error. `STORYGEN_VERBOSE=1` shows everything again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings

VERBOSE_VAR = "STORYGEN_VERBOSE"

# (message regex, warning category, emitting module regex): Python warnings
WARNINGS: tuple[tuple[str, type[Warning], str], ...] = (
    # torchdata 0.11's StatefulDataLoader calls torch's deprecated `set_vital` for every loader
    (r"'set_vital' is deprecated", UserWarning, r"torchdata\."),
    # Lightning's copy of torch's pytree flattening builds the LeafSpec torch 2.10 deprecated
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning, r"lightning\."),
    # Lightning's hint wherever SLURM's `srun` is installed, for runs started outside a job;
    # storygen submits its SLURM jobs itself (hydra/launcher=slurm)
    (r"The `srun` command is available on your system but is not used", Warning, r"lightning\."),
)

# (logger name, message start): log records, dropped by a filter on the logger that makes them
LOG_RECORDS: tuple[tuple[str, str], ...] = (
    # Lightning 2.6's advertisement for its paid LitLogger service, in every run
    ("lightning.pytorch.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),
    ("lightning.fabric.utilities.rank_zero", "💡 Tip: For seamless cloud logging"),
)

# rouge-score's scorer logs "Using default tokenizer." at INFO through absl, once per scorer
QUIET_LOGGERS: tuple[str, ...] = ("absl",)

# W&B's closing panel (30 lines of sparklines and a summary cut at ten keys) repeats what
# storygen's own summary says, and its offline hint names `wandb sync`, where a resumed run
# needs `python -m storygen.sync` (which the summary names); its opening lines stay
QUIET_ENV = {"WANDB_QUIET": "true"}


class _DropMessages(logging.Filter):
    def __init__(self, starts: tuple[str, ...]) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


_filters: dict[str, _DropMessages] = {}  # one per logger, however often setup runs


def verbose() -> bool:
    return os.environ.get(VERBOSE_VAR, "").strip().lower() not in ("", "0", "false", "no")


def quiet_console() -> None:
    """Silence the messages above, unless `STORYGEN_VERBOSE` is set (`.env` read first)."""
    if verbose():
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)  # the user's own setting wins
    for message, category, module in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category, module=module)
    for name in {name for name, _ in LOG_RECORDS}:
        if name not in _filters:
            _filters[name] = _DropMessages(tuple(m for n, m in LOG_RECORDS if n == name))
            logging.getLogger(name).addFilter(_filters[name])
    with contextlib.suppress(ImportError):
        import absl.logging  # noqa: F401  (first: absl makes its logger of its own class)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
