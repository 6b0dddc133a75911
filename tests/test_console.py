"""The dependencies' messages storygen silences (storygen/environment/console.py) stay silent,
only those, and all come back under STORYGEN_VERBOSE=1."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# Each silenced message as its library emits it, beside one that must stay: the same logger's
# or module's other lines are not silenced.
EMIT = """
import logging, warnings
import storygen.environment.resolvers  # what every entry point imports first
logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
def warn(message, category, module):
    warnings.warn_explicit(message, category, "library.py", 1, module=module)
warn("'set_vital' is deprecated, please do not call", UserWarning, "torchdata.stateful")
warn("`isinstance(treespec, LeafSpec)` is deprecated", FutureWarning, "lightning.pytorch.x")
warn("The `srun` command is available on your system but is not used.", UserWarning,
     "lightning.fabric.plugins.environments.slurm")
warn("'set_vital' is deprecated, please do not call", UserWarning, "storygen.data")
warn("another torchdata warning", UserWarning, "torchdata.stateful")
rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
rank_zero.info("💡 Tip: For seamless cloud logging")
rank_zero.info("GPU available: False")
logging.getLogger("absl").info("Using default tokenizer.")
logging.getLogger("absl").warning("an absl warning")
"""

SILENCED = ("LeafSpec", "srun", "Tip", "Using default tokenizer")


def emitted(verbose: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "STORYGEN_VERBOSE"}
    if verbose is not None:
        env["STORYGEN_VERBOSE"] = verbose
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", EMIT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stderr


@pytest.mark.smoke
def test_only_the_listed_messages_are_silenced():
    output = emitted(None)
    for message in SILENCED:
        assert message not in output
    # torchdata's set_vital alone, not storygen's own line of the same words
    assert output.count("'set_vital' is deprecated") == 1
    for kept in ("another torchdata warning", "GPU available: False", "an absl warning"):
        assert kept in output


def test_storygen_verbose_shows_them_all():
    output = emitted("1")
    for message in (*SILENCED, "another torchdata warning", "an absl warning"):
        assert message in output
    assert output.count("'set_vital' is deprecated") == 2
