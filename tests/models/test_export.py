"""A failed merge check: an adapter that cannot be merged soundly is refused, and what an
earlier export wrote stays as it was."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from storygen.errors import StorygenError
from storygen.models.export import export_backbone
from tests.conftest import TINY_RUN, compose_config


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_a_diverged_adapter_is_not_merged(value, tmp_path):
    """A NaN logit difference compares False with `>`: the check once let a NaN model through
    and wrote it over the merged dir of an earlier export; the refused export also replaced
    the earlier adapter before the check."""
    cfg = compose_config([*TINY_RUN, "model=mistral_tiny_lora"], tmp_path)
    model = instantiate(cfg.model)
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data.fill_(value)
    earlier = {name: tmp_path / "export" / name for name in ("adapter", "merged")}
    for directory in earlier.values():
        directory.mkdir(parents=True)
        (directory / "config.json").write_text('{"from": "an earlier export"}')
    with pytest.raises(StorygenError) as error:
        export_backbone(model.backbone, model.tokenizer, tmp_path / "export", merge=True)
    message = str(error.value)
    assert "gives NaN or infinite logits" in message and "ckpt_path=" in message
    assert "\n" not in message
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == ["adapter", "merged"]
    for directory in earlier.values():
        assert sorted(p.name for p in directory.iterdir()) == ["config.json"]
        assert (directory / "config.json").read_text() == '{"from": "an earlier export"}'
