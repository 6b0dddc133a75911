"""storygen's Optuna sweeper for Hydra (Hydra finds sweepers in the `hydra_plugins` package)."""
