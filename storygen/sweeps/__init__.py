"""Optuna searches that outlive one process: the study on a database, its trials' pruning.

`study` opens and checks the study (storage URL, direction, search space) for the sweeper
(hydra_plugins/storygen_sweeper); `trial` is the job's side: report each validation, stop
when the pruner says so.
"""
