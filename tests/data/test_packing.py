"""Packing: rows hold whole stories, stories stay apart, and the loss equals the unpacked one."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    AttentionInterface,
    AttentionMaskInterface,
    BloomConfig,
    GPT2Config,
    MistralConfig,
)
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

from storygen.data.collate import PromptMaskingCollator
from storygen.data.datamodule import StoryDataModule
from storygen.data.formatting import IGNORE_INDEX
from storygen.data.packing import best_fit_decreasing, pack_stories
from storygen.data.tinystories import TinyStoriesCorpus
from storygen.errors import StorygenError
from storygen.models.loader import build_backbone, build_offline_gpt2_tokenizer
from storygen.models.module import count_target_tokens, model_inputs
from storygen.run.checks import check_packing_isolation

EOS = 50256
TINY_ARCHITECTURES = {
    "gpt2": GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=300, n_positions=64),
    "mistral": MistralConfig(
        num_hidden_layers=2,
        hidden_size=64,
        intermediate_size=128,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=300,
    ),
}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 64), max_size=80), st.integers(64, 128))
def test_every_story_lands_in_exactly_one_bin_that_fits(lengths, capacity):
    bins = best_fit_decreasing(lengths, capacity)
    assert sorted(i for members in bins for i in members) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in members) <= capacity for members in bins)
    # never two bins that could have been one: best fit leaves at most one under half full
    assert sum(sum(lengths[i] for i in members) <= capacity // 2 for members in bins) <= 1


def test_packed_rows_restart_positions_and_mask_each_first_label():
    batch = {
        "input_ids": [[1, 2, 3, EOS], [4, 5, EOS], [6, EOS]],
        "labels": [[-100, 2, 3, EOS], [4, 5, EOS], [6, EOS]],
    }
    packed = pack_stories(batch, max_length=6)
    assert packed["input_ids"] == [[1, 2, 3, EOS, 6, EOS], [4, 5, EOS]]
    assert packed["position_ids"] == [[0, 1, 2, 3, 0, 1], [0, 1, 2]]
    assert packed["labels"] == [[-100, 2, 3, EOS, -100, EOS], [-100, 5, EOS]]


def story_batch(lengths: list[int], seed: int = 0) -> list[dict[str, list[int]]]:
    generator = torch.Generator().manual_seed(seed)
    stories = []
    for length in lengths:
        ids = torch.randint(0, 299, (length - 1,), generator=generator).tolist() + [299]
        labels = list(ids)
        labels[:2] = [IGNORE_INDEX] * 2  # a masked prompt, as WritingPrompts has
        stories.append({"input_ids": ids, "labels": labels})
    return stories


@pytest.mark.parametrize("architecture", sorted(TINY_ARCHITECTURES))
def test_a_packed_batch_has_the_loss_of_its_stories_trained_one_by_one(architecture):
    torch.manual_seed(0)
    backbone = build_backbone(architecture=TINY_ARCHITECTURES[architecture]).eval()
    stories = story_batch([9, 5, 12, 7, 3, 10])
    collate = PromptMaskingCollator(pad_token_id=299)
    columns = {key: [story[key] for story in stories] for key in ("input_ids", "labels")}
    packed_rows = pack_stories(columns, max_length=16)
    packed = collate([dict(zip(packed_rows, row)) for row in zip(*packed_rows.values())])
    assert packed["input_ids"].shape[0] < len(stories)

    with torch.no_grad():
        packed_loss = backbone(**model_inputs(packed)).loss
        losses, weights = [], []
        for story in stories:
            alone = collate([story])
            losses.append(backbone(**model_inputs(alone)).loss)
            weights.append(count_target_tokens(alone["labels"]))
    unpacked_loss = sum(w * loss for w, loss in zip(weights, losses)) / sum(weights)
    assert count_target_tokens(packed["labels"]) == sum(weights)
    assert torch.allclose(packed_loss, unpacked_loss, atol=1e-5)
    assert packed["attention_mask"].sum() == sum(len(s["input_ids"]) for s in stories)


@pytest.mark.parametrize("architecture", sorted(TINY_ARCHITECTURES))
def test_models_that_separate_packed_stories_pass_the_check(architecture):
    check_packing_isolation(build_backbone(architecture=TINY_ARCHITECTURES[architecture]))


def test_a_model_whose_attention_ignores_position_ids_is_refused():
    bloom = build_backbone(
        architecture=BloomConfig(n_layer=2, hidden_size=64, n_head=2), attn_implementation="eager"
    )
    with pytest.raises(StorygenError, match="data.packing=true, but BloomForCausalLM"):
        check_packing_isolation(bloom)


def rows_leak(module, query, key, value, attention_mask, **kwargs):
    """sdpa, but a batch of several rows attends across packed stories, as transformers'
    flash_attention_2 does (it separates packed stories only in a batch of one row)."""
    if query.shape[0] > 1:
        attention_mask = None
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def test_an_attention_that_separates_stories_only_in_one_row_is_refused():
    AttentionInterface.register("rows_leak", rows_leak)
    AttentionMaskInterface.register("rows_leak", sdpa_mask)
    backbone = build_backbone(
        architecture=TINY_ARCHITECTURES["gpt2"], attn_implementation="rows_leak"
    )
    with pytest.raises(StorygenError, match=r"\(attention rows_leak\) lets packed stories"):
        check_packing_isolation(backbone)


def test_run_on_rows_are_full_and_keep_every_token_in_order():
    batch = {"input_ids": [[1, 2, 3, EOS], [4, 5, 6, 7, EOS], [8, EOS]]}
    batch["labels"] = [list(ids) for ids in batch["input_ids"]]
    packed = pack_stories(batch, max_length=4, whole_stories=False)
    assert packed["input_ids"] == [[1, 2, 3, EOS], [4, 5, 6, 7], [EOS, 8, EOS]]
    # the run-on story keeps its positions; each story's first label is masked
    assert packed["position_ids"] == [[0, 1, 2, 3], [0, 1, 2, 3], [4, 0, 1]]
    assert packed["labels"] == [[-100, 2, 3, EOS], [-100, 5, 6, 7], [EOS, -100, EOS]]


def sample_batches(**options) -> list[dict[str, torch.Tensor]]:
    data = StoryDataModule(
        TinyStoriesCorpus(source="sample"), build_offline_gpt2_tokenizer(), **options
    )
    data.setup()
    assert "position_ids" not in next(iter(data.val_dataloader()))
    return list(data.train_dataloader())


def non_pad_share(batches: list[dict[str, torch.Tensor]]) -> tuple[float, int]:
    real = sum(batch["attention_mask"].sum().item() for batch in batches)
    return real / sum(batch["input_ids"].numel() for batch in batches), real


def test_packing_the_sample_pads_less_and_loses_no_token():
    unpacked_share, unpacked_tokens = non_pad_share(sample_batches(max_length=512))
    whole_share, whole_tokens = non_pad_share(sample_batches(max_length=512, packing=True))
    run_on = sample_batches(max_length=512, packing=True, pack_whole_stories=False)
    run_on_share, run_on_tokens = non_pad_share(run_on)
    assert unpacked_tokens == whole_tokens == run_on_tokens
    # the sample's stories are all 108-170 tokens: three whole ones fill 512 tokens to 0.9
    assert unpacked_share < whole_share < run_on_share
    assert run_on_share >= 0.99
    assert all("position_ids" in batch for batch in run_on)
