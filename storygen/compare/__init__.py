"""Compare runs side by side: `python -m storygen.compare multirun/<date>/<time>/ [--html]`.

`runs` reads each run (its directory or its W&B run) into a `ComparedRun`; `report` writes
the table and figures; `__main__` is the command line.
"""

from storygen.compare.report import default_mode, sort_runs, write_report
from storygen.compare.sources import ComparedRun, read_local_runs, record_from_wandb

__all__ = [
    "ComparedRun",
    "default_mode",
    "read_local_runs",
    "record_from_wandb",
    "sort_runs",
    "write_report",
]
