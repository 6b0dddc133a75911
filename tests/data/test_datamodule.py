"""Tokenizing through the real config tree: joint prompt+story tokens with the real Mistral
tokenizer, cut stories without EOS (counted and recorded), the same tokens with num_proc=2."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import lightning as L
import pytest
import yaml
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger

from storygen.data.datamodule import StoryDataModule
from tests.conftest import ROOT, TINY_RUN, compose_config

MISTRAL_WRITINGPROMPTS = [
    *TINY_RUN,
    "model=mistral_tiny_lora",
    "data=writingprompts",
    "data.corpus.source=sample",
    "data.max_length=512",
]


def build_datamodule(overrides: list[str], tmp_path, **options) -> StoryDataModule:
    cfg = compose_config(overrides, tmp_path)
    tokenizer = instantiate(cfg.model.tokenizer)
    return instantiate(cfg.data, tokenizer=tokenizer, **options)


def test_mistral_learns_each_story_as_the_joint_text_tokenizes_it(tmp_path):
    """Tokenized apart, every WritingPrompts story opened with `▁`: a stray leading space."""
    datamodule = build_datamodule(MISTRAL_WRITINGPROMPTS, tmp_path)
    datamodule.setup()
    tokenizer, story_format = datamodule.tokenizer, datamodule.story_format
    assert len(tokenizer) == 32000 and tokenizer.bos_token_id == 1
    stories, tokenized = datamodule.stories["train"], datamodule.tokenized["train"]
    assert len(stories) == len(tokenized) == 48
    for story, example in zip(stories, tokenized):
        prompt = story_format.render_prompt(story["prompt"])
        joint = tokenizer(prompt + story["story"], add_special_tokens=False)["input_ids"]
        assert example["input_ids"][:2] == [1, *joint[:1]]  # Mistral keeps its BOS
        assert example["input_ids"][1:] == (joint + [2])[: story_format.max_length - 1]
        masked = example["labels"].count(-100)
        assert example["input_ids"][:masked] == tokenizer(prompt)["input_ids"]
        first = tokenizer.convert_ids_to_tokens(example["labels"][masked])
        assert not first.startswith("▁"), (story["story"][:30], first)


def test_cut_stories_end_without_eos_and_are_counted_warned_and_recorded(tmp_path, caplog):
    overrides = [*TINY_RUN, "data.max_length=160"]
    datamodule = build_datamodule(overrides, tmp_path)
    trainer = L.Trainer(logger=CSVLogger(tmp_path, name="csv", version=""), barebones=False)
    datamodule.trainer = trainer
    with caplog.at_level(logging.WARNING):
        datamodule.setup("fit")
    eos = datamodule.tokenizer.eos_token_id
    counts = {}
    for split, rows in datamodule.tokenized.items():
        ends = [labels[-1] for labels in rows["labels"]]
        counts[split] = sum(end != eos for end in ends)
        assert all(len(ids) == 160 for ids, end in zip(rows["input_ids"], ends) if end != eos)
    assert 0 < counts["train"] < 48 and datamodule.truncated == counts
    assert f"Cut {counts['train']} of 48 train stories" in caplog.text
    assert "at data.max_length=160 (they end without EOS)" in caplog.text
    trainer.loggers[0].save()
    hparams = yaml.safe_load((tmp_path / "csv" / "hparams.yaml").read_text())
    assert hparams["data/train_truncated"] == counts["train"]

    # a cached run counts the same; packed rows are not stories
    again = build_datamodule(overrides, tmp_path)
    again.setup()
    assert again.truncated == counts
    packed = build_datamodule(
        [*overrides, "data.packing=true", "data.pack_whole_stories=false"], tmp_path
    )
    with caplog.at_level(logging.WARNING):
        packed.setup()
    assert packed.truncated == counts and len(packed.tokenized["train"]) < 48
    assert caplog.text.count(f"Cut {counts['train']} of 48 train stories") == 3  # each run


@pytest.mark.parametrize("data", ["tinystories", "writingprompts"])
def test_two_processes_prepare_the_same_tokens_as_one(data, tmp_path):
    overrides = [*TINY_RUN, f"data={data}", "data.corpus.source=sample", "data.cache_dir=null"]
    one = build_datamodule(overrides, tmp_path)
    two = build_datamodule([*overrides, "data.num_proc=2"], tmp_path)
    for datamodule in (one, two):
        datamodule.setup()
    for split in ("train", "validation", "test"):
        assert two.tokenized[split].to_dict() == one.tokenized[split].to_dict()
        assert two.stories[split].to_dict() == one.stories[split].to_dict()
    assert two.truncated == one.truncated


KEY_SCRIPT = """
import sys
from hydra.utils import instantiate
from tests.conftest import compose_config
for overrides in {runs!r}:
    cfg = compose_config(overrides, {tmp!r})
    print(instantiate(cfg.data, tokenizer=instantiate(cfg.model.tokenizer)).cache_key())
"""


@pytest.mark.slow
def test_another_process_computes_the_same_cache_keys(tmp_path):
    """The cache helps only if the next run, a new process, finds the same key."""
    runs = [TINY_RUN, MISTRAL_WRITINGPROMPTS]
    here = [build_datamodule(overrides, tmp_path).cache_key() for overrides in runs]
    script = KEY_SCRIPT.format(runs=runs, tmp=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert result.stdout.split() == here
