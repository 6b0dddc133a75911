"""Tokenizing through the real config tree: joint prompt+story tokens with the real Mistral
tokenizer, cut stories without EOS (counted and recorded), the same tokens with num_proc=2."""

from __future__ import annotations

import logging
from functools import partial

import lightning as L
import pytest
import torch
import yaml
from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger

from storygen.data import datamodule as datamodule_module
from storygen.data.datamodule import StoryDataModule
from storygen.data.formatting import tokenize_stories
from tests.conftest import TINY_RUN, compose_config, run_python

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
    result = run_python(script, check=True)
    assert result.stdout.split() == here


AS_LOADED_CASES = {
    # GPT-2 adds no BOS, Mistral one; some stories cut at 160 tokens
    "tinystories-gpt2": ["data.max_length=160"],
    "tinystories-mistral": ["model=mistral_tiny_lora", "data.max_length=160"],
    # masked prompts, stories cleaned as they load: at 32 tokens some prompts fill the row
    # (their stories dropped), at 120 the longest prompts are checked and kept
    "writingprompts-drops": [
        "data=writingprompts",
        "data.corpus.source=sample",
        "data.max_length=32",
    ],
    "writingprompts-mistral": [
        "model=mistral_tiny_lora",
        "data=writingprompts",
        "data.corpus.source=sample",
        "data.max_length=120",
    ],
}


@pytest.mark.parametrize("case", AS_LOADED_CASES)
def test_train_tokenized_as_loaded_is_train_tokenized_ahead(case, tmp_path, caplog):
    """Row for row and batch for batch (in loader workers too), cut and dropped stories
    included."""
    overrides = [*TINY_RUN, *AS_LOADED_CASES[case], "data.cache_dir=null"]
    ahead = build_datamodule([*overrides, "data.tokenize_train=ahead"], tmp_path)
    as_loaded = build_datamodule(
        [*overrides, "data.tokenize_train=as_loaded", "data.num_workers=2"], tmp_path
    )
    with caplog.at_level(logging.WARNING):
        ahead.setup()
        warned_ahead, _ = caplog.text, caplog.clear()
        as_loaded.setup()
    assert "input_ids" not in as_loaded.tokenized["train"].column_names  # not tokenized yet
    rows = ahead.tokenized["train"].to_list()
    assert ahead.truncated["train"] > 0 and 0 < len(rows) <= 48
    assert [as_loaded.tokenized["train"][i] for i in range(len(rows))] == rows
    assert len(as_loaded.tokenized["train"]) == len(rows)
    for expected, batch in zip(ahead.train_dataloader(), as_loaded.train_dataloader(), strict=True):
        assert expected.keys() == batch.keys()
        assert all(torch.equal(expected[key], batch[key]) for key in expected)
    assert as_loaded.examples == ahead.examples
    assert "train" not in as_loaded.truncated  # known only once tokenized
    assert as_loaded.train_size() == (len(rows), len(rows), None)
    for split in ("validation", "test"):
        assert as_loaded.tokenized[split].to_dict() == ahead.tokenized[split].to_dict()
    dropped = [line for line in warned_ahead.splitlines() if "whose prompt fills" in line]
    assert bool(dropped) == (case == "writingprompts-drops")
    assert all(line.split(" - ")[-1] in caplog.text for line in dropped)


def test_train_stories_left_whole_tokenize_as_their_openings_and_rests(tmp_path):
    """With the bare `{prompt}` template and learned prompts, train is not split into
    openings; its tokens are those of the split stories, prompt + rest."""
    datamodule = build_datamodule([*TINY_RUN, "data.max_length=64"], tmp_path)
    datamodule.setup()
    whole = datamodule.stories["train"]
    assert set(whole["prompt"]) == {""}
    split = datamodule.corpus.load(train_openings=True)["train"].select(range(48))
    assert (
        all(split["prompt"])
        and [p + s for p, s in zip(split["prompt"], split["story"])] == (whole["story"])
    )
    tokenize = partial(
        tokenize_stories, tokenizer=datamodule.tokenizer, story_format=datamodule.story_format
    )
    assert tokenize(split[:]) == tokenize(whole[:])
    # validation and test keep their openings: generation is prompted with them
    assert all(datamodule.stories["test"]["prompt"])


def test_tokenize_train_null_tokenizes_a_large_learned_split_as_it_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(datamodule_module, "AS_LOADED_BYTES", 10_000)  # the sample's 48: ~40 KB
    overrides = [*TINY_RUN, "data.cache_dir=null"]
    chosen = {}
    for name, extra in {
        "learned": [],
        "small": ["data.max_train_samples=4"],
        "packing": ["data.packing=true"],
        "group_by_length": ["data.group_by_length=true"],
        "masked": ["data=writingprompts", "data.corpus.source=sample"],
    }.items():
        datamodule = build_datamodule([*overrides, *extra], tmp_path)
        datamodule.setup()
        chosen[name] = "input_ids" not in datamodule.tokenized["train"].column_names
    assert chosen == {
        "learned": True,
        "small": False,
        "packing": False,
        "group_by_length": False,
        "masked": True,
    }


@pytest.mark.parametrize(
    "extra, message",
    [
        (["data.packing=true"], "data.tokenize_train=as_loaded cannot serve data.packing=true"),
        (["data.group_by_length=true"], "cannot serve data.group_by_length=true"),
    ],
)
def test_tokenize_train_as_loaded_is_refused_where_tokens_are_needed_first(
    extra, message, tmp_path
):
    with pytest.raises(Exception, match=message) as raised:
        build_datamodule([*TINY_RUN, "data.tokenize_train=as_loaded", *extra], tmp_path)
    assert "set data.tokenize_train=ahead" in str(raised.value)
