"""Upload offline W&B runs with their whole history: `python -m storygen.sync DIR... [--dry-run]`.

A run resumed offline leaves two `wandb/offline-run-*` folders with one id; syncing them in
the wrong order (or, with wandb up to 0.29, without `--append`) can replace the earlier
history with the later. This runs `wandb sync` in the order that keeps both
(storygen.environment.wandb_run.sync_commands).
"""

if __name__ == "__main__":  # before the imports: a dependency out of range is one line
    from storygen.environment.versions import exit_on_unsupported_versions

    exit_on_unsupported_versions()

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from storygen.environment.wandb_run import offline_runs, sync_commands, sync_has_append
from storygen.errors import StorygenError, exit_on_user_error


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m storygen.sync", description=__doc__)
    parser.add_argument("dirs", nargs="+", type=Path, metavar="RUN_OR_SWEEP_DIR")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the wandb sync commands, run none"
    )
    args = parser.parse_args(argv)
    with exit_on_user_error():
        runs = offline_runs(args.dirs)
        if not runs:
            raise StorygenError(
                f"no offline W&B runs (wandb/offline-run-*) under {', '.join(map(str, args.dirs))};"
                " pass run or sweep dirs of runs logged offline."
            )
        for command in sync_commands(runs, append=sync_has_append()):
            print(shlex.join(command), flush=True)
            if not args.dry_run:  # the wandb this Python imports, whichever is on PATH
                subprocess.run([sys.executable, "-m", *command], check=True)


if __name__ == "__main__":
    main()
