"""The private Lightning names storygen's exact resume uses exist in the installed Lightning
(CI checks the newest release, the floor and the GPU image's), and one that has gone stops a
fit with one message naming the Lightning version, before any step trains."""

from __future__ import annotations

import lightning
import pytest
from lightning.fabric.utilities import data as fabric_data
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import WandbLogger

from storygen.callbacks.lightning_internals import check_lightning_internals
from storygen.callbacks.loggers import ResumableCSVLogger
from storygen.callbacks.resilience import TrainLoaderResume
from storygen.errors import StorygenError


@pytest.fixture
def trainer(tmp_path) -> Trainer:
    return Trainer(
        logger=[ResumableCSVLogger(tmp_path), WandbLogger(save_dir=tmp_path, offline=True)],
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )


@pytest.mark.smoke
def test_every_private_name_storygen_uses_is_in_the_installed_lightning(trainer):
    check_lightning_internals(trainer)


@pytest.mark.parametrize(
    ("owner", "name", "named"),
    [
        (lambda t: t.fit_loop, "_data_fetcher", "Trainer.fit_loop._data_fetcher"),
        (lambda t: t.loggers[0], "_fs", "CSVLogger._fs"),
        (lambda t: t.loggers[1], "_offline", "WandbLogger._offline"),
        (
            lambda t: fabric_data,
            "_set_sampler_epoch",
            "lightning.fabric.utilities.data._set_sampler_epoch",
        ),
    ],
    ids=["loop", "csv-logger", "wandb-logger", "module"],
)
def test_a_fit_stops_with_the_lightning_version_when_a_name_has_gone(
    trainer, monkeypatch, owner, name, named
):
    monkeypatch.delattr(owner(trainer), name)
    with pytest.raises(StorygenError) as error:
        TrainLoaderResume().setup(trainer, None, "fit")  # as a fit starts
    message = str(error.value)
    assert message.startswith(f"lightning {lightning.__version__} lacks {named}, "), message
