"""model.fused_loss: the LM head and the loss in one GPU kernel give the plain path's loss and
gradients; on a CPU the option is refused with the fix."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from storygen.errors import StorygenError, find_user_error
from storygen.models.fused_loss import FUSED_LOSSES, build_fused_loss, fused_loss_forward
from tests.conftest import TINY_RUN, compose_config

TINY_MISTRAL = [*TINY_RUN, "model=mistral_tiny_lora"]
MODELS = pytest.mark.parametrize("overrides", [TINY_RUN, TINY_MISTRAL], ids=["gpt2", "qlora"])


def batch_of(vocab: int, device: str = "cpu") -> dict[str, torch.Tensor]:
    ids = torch.randint(0, vocab, (2, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # left padding, as the collator pads
    labels = ids.masked_fill(mask == 0, -100)
    labels[0, :3] = -100  # a masked prompt
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels, "use_cache": False}
    return {
        key: value.to(device) if torch.is_tensor(value) else value for key, value in batch.items()
    }


def head_then_cross_entropy(hidden, weight, labels):
    """What every fused kernel computes, written plainly: shift, LM head, mean over targets."""
    logits = hidden[:, :-1] @ weight.T
    return F.cross_entropy(logits.flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100)


@MODELS
def test_the_fused_path_feeds_the_kernel_what_the_plain_loss_sees(overrides, tmp_path):
    """Runs on a CPU: the decoder stack / head split, the shift and the masking around the
    kernel, with a plain head + cross-entropy standing in for it, equal the backbone's loss."""
    backbone = instantiate(compose_config(overrides, tmp_path).model.backbone).eval()
    batch = batch_of(backbone.config.vocab_size)
    fused = fused_loss_forward(backbone, batch, head_then_cross_entropy)
    torch.testing.assert_close(fused, backbone(**batch).loss, rtol=1e-6, atol=1e-6)


def test_a_fused_loss_on_a_cpu_is_refused_with_the_fix(tmp_path):
    """Lightning's setup hook, as `python -m storygen.train model.fused_loss=liger` meets it
    (exit_on_user_error prints it as one `error:` line), before any step runs."""
    model = instantiate(compose_config([*TINY_RUN, "model.fused_loss=liger"], tmp_path).model)
    trainer = L.Trainer(accelerator="cpu", max_steps=1, logger=False, enable_checkpointing=False)
    with pytest.raises(StorygenError) as info:
        trainer.fit(model, train_dataloaders=[batch_of(model.backbone.config.vocab_size)])
    assert str(info.value) == (
        "model.fused_loss=liger runs only on CUDA GPUs (Triton kernels), and this run is on "
        "cpu; set model.fused_loss=null (the plain loss) on a CPU."
    )
    assert trainer.global_step == 0


def test_an_unknown_fused_loss_is_refused_at_build(tmp_path):
    with pytest.raises(Exception) as info:
        instantiate(compose_config([*TINY_RUN, "model.fused_loss=triton"], tmp_path).model)
    assert "model.fused_loss=triton is not a fused loss; use one of liger, cce" in str(
        find_user_error(info.value)
    )


def kernel_missing(kind: str) -> str | None:
    if not torch.cuda.is_available():
        return "needs a CUDA GPU (Triton kernels); none here"
    module = {"liger": "liger_kernel", "cce": "cut_cross_entropy"}[kind]
    if importlib.util.find_spec(module) is None:
        return f"{FUSED_LOSSES[kind]} is not installed (pip install 'storygen[fused-loss]')"
    return None


@pytest.mark.parametrize("kind", list(FUSED_LOSSES))
@MODELS
def test_the_fused_kernel_gives_the_plain_loss_and_gradients_in_bf16(
    kind: str, overrides: list[str], tmp_path: Path
):
    if reason := kernel_missing(kind):
        pytest.skip(reason)
    cfg = compose_config(overrides, tmp_path)
    backbone = instantiate(cfg.model.backbone).cuda().eval()  # 4-bit weights load on cuda
    batch = batch_of(backbone.config.vocab_size, "cuda")
    results = []
    for loss_of in (
        lambda: backbone(**batch).loss,
        lambda: fused_loss_forward(backbone, batch, build_fused_loss(kind)),
    ):
        backbone.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):  # as trainer=gpu (bf16-mixed)
            loss = loss_of()
        loss.backward()
        grads = {n: p.grad.float() for n, p in backbone.named_parameters() if p.grad is not None}
        results.append((loss.float(), grads))
    (plain, plain_grads), (fused, fused_grads) = results
    torch.testing.assert_close(fused, plain, rtol=1e-2, atol=1e-2)  # bf16 rounding
    assert fused_grads.keys() == plain_grads.keys()
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=5e-2, atol=5e-3, msg=name)
