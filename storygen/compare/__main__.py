"""Compare runs side by side: `python -m storygen.compare multirun/<date>/<time>/ [--html]`.

Reads what each run left behind (`.hydra/`, `csv/metrics.csv`, `run.json`,
`generations/{test,val}.jsonl`), or the same records from W&B (`--wandb ENTITY/PROJECT
--group G`), and writes `report.md` (a table of runs, loss curves, ROUGE bars and story
length histograms as PNGs, the first prompts' stories side by side, and for an Optuna search
its study's trials and plots) into `<sweep>/compare/` or `--out`; with `--reproduction` also
`reproduction.md`, the published study's table with the runs beside it. Nothing else is
written.
"""

if __name__ == "__main__":  # before the imports: a dependency out of range is one line
    from storygen.environment.versions import exit_on_unsupported_versions

    exit_on_unsupported_versions()

import argparse
import logging
from pathlib import Path

from storygen.compare.report import write_report
from storygen.compare.reproduction import write_reproduction_report
from storygen.compare.sources import (
    GROUP_HELP,
    RUN_DIR_HELP,
    ComparedRun,
    find_run_dirs,
    is_run_dir,
    read_local_runs,
    read_wandb_runs,
)
from storygen.compare.study import find_study
from storygen.environment.resolvers import setup_environment
from storygen.errors import StorygenError, exit_on_user_error

# --- command line -------------------------------------------------------------------------


def output_dir(dirs: list[Path], out: str | None) -> Path:
    """`<sweep>/compare/` for one sweep dir; else --out, which must lie outside every run."""
    if out is None:
        if len(dirs) == 1 and not is_run_dir(dirs[0]):
            return dirs[0] / "compare"
        raise StorygenError("pass --out DIR for the report; only one sweep dir has a default.")
    target = Path(out).resolve()
    for run in (run.resolve() for d in dirs for run in find_run_dirs(d)):
        if target == run or run in target.parents:
            raise StorygenError(
                f"--out {out} is inside the run {run}; pick a directory outside the runs."
            )
    return Path(out)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m storygen.compare",
        description="Compare runs: a markdown report (table, loss curves, ROUGE, story lengths).",
    )
    parser.add_argument("dirs", nargs="*", type=Path, metavar="RUN_OR_SWEEP_DIR")
    parser.add_argument("--out", help="report directory (default: <sweep>/compare for one sweep)")
    parser.add_argument(
        "--metric", help="sort by this metric (default: the runs' optimized_metric)"
    )
    parser.add_argument("--mode", choices=("min", "max"), help="default: max for ROUGE, distinct-n")
    parser.add_argument("--html", action="store_true", help="also write report.html")
    parser.add_argument(
        "--reproduction",
        action="store_true",
        help="also write reproduction.md: the published study's table with these runs beside it",
    )
    parser.add_argument(
        "--baseline",
        metavar="RUN",
        help="compare every configuration with this run's (a run name in the table; default: "
        "the best run's) by a paired bootstrap on their shared prompts",
    )
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead")
    parser.add_argument("--group", help=f"with --wandb: the W&B group; {GROUP_HELP}")
    parser.add_argument(
        "--wandb-workspace",
        metavar="ENTITY/PROJECT",
        help="also build the sweep's W&B workspace (loss curves, parallel coordinates over the "
        "swept keys, parameter importance, stories): saved when W&B is online, its spec written "
        "to the report directory (needs the `dashboard` extra)",
    )
    parser.add_argument(
        "--storage",
        help="an Optuna search's database URL (default: the one its sweep dir names, or "
        "STORYGEN_OPTUNA_STORAGE where the sweep took it from there)",
    )
    return parser.parse_args(argv)


def load_runs(args: argparse.Namespace) -> tuple[list[ComparedRun], str, Path]:
    """The runs, a line naming where they came from, and the report directory."""
    if args.wandb:
        if args.dirs or not args.group or not args.out:
            raise StorygenError(
                "--wandb ENTITY/PROJECT needs --group G and --out DIR, and no run dirs."
            )
        source = f"W&B {args.wandb}, group {args.group}"
        return read_wandb_runs(args.wandb, args.group), source, Path(args.out)
    if not args.dirs:
        raise StorygenError(f"pass {RUN_DIR_HELP}, or --wandb ENTITY/PROJECT --group G.")
    out = output_dir(args.dirs, args.out)
    return read_local_runs(args.dirs), ", ".join(f"`{d}`" for d in args.dirs), out


def build_workspace(args: argparse.Namespace, out: Path) -> str:
    if len(args.dirs) != 1:
        raise StorygenError("--wandb-workspace builds one sweep's workspace: pass one sweep dir.")
    from storygen.compare.workspace import sweep_workspace, write_or_save
    from storygen.environment.wandb_run import wandb_online

    return write_or_save(sweep_workspace(args.dirs[0], args.wandb_workspace), out, wandb_online())


def main(argv: list[str] | None = None) -> None:
    # exit_on_user_error prints the one `error:` line; keep logging's last resort from
    # printing the same message again (Hydra configures logging for the other entry points)
    logging.getLogger("storygen").addHandler(logging.NullHandler())
    args = parse_args(argv)
    with exit_on_user_error():
        records, source, out = load_runs(args)
        study = find_study(args.dirs, args.storage)
        written = write_report(
            records, source, out, args.metric, args.mode, args.html, study, args.baseline
        )
        if args.reproduction:
            written.append(write_reproduction_report(records, out))
        if args.wandb_workspace:
            written.append(build_workspace(args, out))
        print(f"compared {len(records)} runs: " + ", ".join(str(path) for path in written))


if __name__ == "__main__":
    setup_environment()
    main()
