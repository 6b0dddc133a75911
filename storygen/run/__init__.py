"""The bookkeeping of a training run: the checks before it starts, its record (`run.json`),
its closing summary, and its life as a SLURM job."""
