"""Declared dependency ranges: the installed set satisfies them (CI runs this at the newest
releases, at every floor and on the GPU image's versions), and a package outside its range
is one line naming it, the version found and the range needed."""

from __future__ import annotations

from importlib.metadata import requires, version

import pytest

from storygen.environment import versions
from storygen.environment.versions import exit_on_unsupported_versions, version_problems
from tests.conftest import ROOT, run_module


@pytest.mark.smoke
def test_the_installed_packages_are_in_the_declared_ranges():
    assert version_problems() == []


def test_a_package_below_its_floor_is_one_line_naming_it(monkeypatch, capsys):
    monkeypatch.setattr(
        versions, "version", lambda name: "4.57.1" if name == "transformers" else version(name)
    )
    with pytest.raises(SystemExit) as exit_info:
        exit_on_unsupported_versions()
    assert exit_info.value.code == 2
    declared = next(r for r in requires("storygen") if r.startswith("transformers"))
    assert capsys.readouterr().err.splitlines() == [
        f"error: transformers 4.57.1 is installed; storygen needs {declared} "
        f"(pip install '{declared}')"
    ]


def test_a_missing_package_is_named(monkeypatch):
    def without_peft(name: str) -> str:
        if name == "peft":
            raise versions.PackageNotFoundError(name)
        return version(name)

    monkeypatch.setattr(versions, "version", without_peft)
    assert version_problems() == [
        "peft is not installed; storygen needs it (pip install 'peft>=0.18')"
    ]


def test_an_entry_point_checks_before_it_imports(tmp_path):
    """`python -m storygen.train` with a package below its floor stops with the line (a real
    older package, shadowing the installed one's metadata)."""
    metadata = tmp_path / "peft-0.17.1.dist-info"
    metadata.mkdir()
    (metadata / "METADATA").write_text("Metadata-Version: 2.1\nName: peft\nVersion: 0.17.1\n")
    result = run_module(
        "storygen.inspect", "model=gpt2_tiny", cwd=ROOT, env={"PYTHONPATH": f"{tmp_path}:{ROOT}"}
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: peft 0.17.1 is installed; storygen needs peft>=0.18 (pip install 'peft>=0.18')"
    ]
