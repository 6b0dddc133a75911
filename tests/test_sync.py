"""`python -m storygen.sync`: a resumed offline run's folders synced oldest first."""

from __future__ import annotations

from pathlib import Path

import pytest

from storygen.environment.wandb_run import offline_runs, sync_commands, sync_has_append
from storygen.sync import main


def offline_folders(sweep: Path) -> list[Path]:
    """Job 0 resumed once (two folders, one id; the later one sorts first by mtime on purpose),
    job 1 not resumed."""
    names = [
        ("0", "offline-run-20261128_130500-aaa111"),
        ("0", "offline-run-20261128_120000-aaa111"),
        ("1", "offline-run-20261128_120001-bbb222"),
    ]
    folders = []
    for job, name in names:
        folder = sweep / job / "wandb" / name
        folder.mkdir(parents=True)
        (folder / f"run-{name.rsplit('-', 1)[-1]}.wandb").write_bytes(b":W&B")
        folders.append(folder)
    (sweep / "0" / "wandb" / "latest-run").mkdir()  # wandb's own link; not a run
    return folders


def test_a_resumed_run_syncs_oldest_first_then_appends(tmp_path: Path) -> None:
    later, earlier, other = offline_folders(tmp_path)
    runs = offline_runs([tmp_path])
    assert runs == {"aaa111": [earlier, later], "bbb222": [other]}
    # wandb up to 0.29: the earlier folder makes the run, the later one is appended to it
    assert sync_commands(runs, append=True) == [
        ["wandb", "sync", str(earlier)],
        ["wandb", "sync", "--append", "--id", "aaa111", str(later)],
        ["wandb", "sync", str(other)],
    ]
    # later wandb: one run's folders given together, which it syncs in order of start time
    assert sync_commands(runs, append=False) == [
        ["wandb", "sync", str(earlier), str(later)],
        ["wandb", "sync", str(other)],
    ]


def test_dry_run_prints_the_commands_for_the_installed_wandb(tmp_path: Path, capsys) -> None:
    later, earlier, _ = offline_folders(tmp_path)
    main([str(tmp_path), "--dry-run"])
    printed = capsys.readouterr().out.splitlines()
    expected = sync_commands(offline_runs([tmp_path]), append=sync_has_append())
    assert printed == [" ".join(command) for command in expected]
    assert printed[0] == f"wandb sync {earlier}" + ("" if sync_has_append() else f" {later}")


def test_no_offline_runs_is_one_error_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith("error: no offline W&B runs") and str(tmp_path) in error
