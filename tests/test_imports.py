"""Every module of storygen and its Hydra plugins imports with the installed versions.

CI runs this in each of its legs (the newest releases, every declared floor, the GPU image's
versions): a module that calls an API its floor lacks at import time fails here by name, and
Hydra must find the launchers and the sweeper the configs name.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper

import hydra_plugins.storygen_sweeper
import storygen

MODULES = sorted(
    info.name
    for package in (storygen, hydra_plugins.storygen_sweeper)
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{package.__name__}.")
)


@pytest.mark.smoke
def test_every_module_is_found():
    assert {
        "storygen.train",
        "storygen.evaluate",
        "storygen.generate",
        "storygen.inspect",
        "storygen.export",
        "storygen.compare.__main__",
        "hydra_plugins.storygen_sweeper.optuna_sweeper",
    } <= set(MODULES)


@pytest.mark.smoke
@pytest.mark.parametrize("module", MODULES)
def test_module_imports(module):
    importlib.import_module(module)


@pytest.mark.smoke
def test_hydra_finds_the_sweeper_and_launchers_the_configs_name():
    plugins = Plugins.instance()
    sweepers = {p.__name__ for p in plugins.discover(Sweeper)}
    launchers = {p.__name__ for p in plugins.discover(Launcher)}
    assert "StoryOptunaSweeper" in sweepers, sweepers
    assert {"SlurmLauncher", "JoblibLauncher", "BasicLauncher"} <= launchers, launchers
