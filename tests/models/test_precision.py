"""Validation's story generation runs under the run's precision, as the step methods do."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from storygen.metrics import scoring
from storygen.models.generation import generate_stories
from tests.conftest import TINY_RUN, compose_config


def validate_with_story_metrics(tmp_path, monkeypatch, precision: str):
    """One validation of a tiny GPT-2 with the story-metrics callback; the dtypes of the
    logits its generation produced (not validation_step's), and the stories."""
    cfg = compose_config(
        [*TINY_RUN, "callbacks.story_metrics.num_prompts=2", "data.max_eval_samples=2"], tmp_path
    )
    tokenizer = instantiate(cfg.model.tokenizer)
    torch.manual_seed(0)
    model = instantiate(cfg.model, tokenizer=tokenizer)
    datamodule = instantiate(cfg.data, tokenizer=tokenizer)
    callback = instantiate(cfg.callbacks.story_metrics, generations_dir=None)
    dtypes: list[torch.dtype] = []
    generating = []

    def record(module, args, out):
        if generating:
            dtypes.append(out.dtype)

    def generate_and_record(*args, **kwargs):
        generating.append(True)
        try:
            return generate_stories(*args, **kwargs)
        finally:
            generating.clear()

    monkeypatch.setattr(scoring, "generate_stories", generate_and_record)
    hook = model.backbone.get_output_embeddings().register_forward_hook(record)
    L.Trainer(
        accelerator="cpu",
        precision=precision,
        callbacks=[callback],
        limit_val_batches=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).validate(model, datamodule=datamodule)
    hook.remove()
    return model, datamodule, callback, set(dtypes)


def test_validation_generation_is_autocast_under_mixed_precision(tmp_path, monkeypatch):
    """Lightning autocasts only validation_step; generation ran in fp32 on GPUs before."""
    *_, dtypes = validate_with_story_metrics(tmp_path, monkeypatch, "bf16-mixed")
    assert dtypes == {torch.bfloat16}


def test_fp32_generation_is_unchanged_by_the_precision_context(tmp_path, monkeypatch):
    model, datamodule, callback, dtypes = validate_with_story_metrics(
        tmp_path, monkeypatch, "32-true"
    )
    assert dtypes == {torch.float32}
    prompts = datamodule.story_prompts("validation", 2)
    direct = generate_stories(
        model.backbone,
        model.tokenizer,
        [prompt.model_input for prompt in prompts],
        callback.generation,
        batch_size=callback.batch_size,
        seed=callback.seed,
    )
    assert [sample["generation"] for sample in callback.samples] == [s.text for s in direct]
    assert any(story.new_tokens for story in direct)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 is a CUDA setting")
def test_training_on_a_gpu_enables_tf32(tmp_path):
    from storygen.train import train

    torch.backends.cuda.matmul.allow_tf32 = False
    on_gpu = [item for item in TINY_RUN if item != "trainer=cpu"] + ["trainer=gpu"]
    cfg = compose_config(
        [*on_gpu, "trainer.max_steps=1", "test=false", "export=false", "logger=csv"], tmp_path
    )
    train(cfg)
    assert torch.backends.cuda.matmul.allow_tf32
