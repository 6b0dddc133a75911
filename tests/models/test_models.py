"""The loader on tiny models: 4-bit LoRA trains, adapter checkpoints round-trip, exports load."""

from __future__ import annotations

import json
from pathlib import Path

import bitsandbytes as bnb
import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.plugins.precision import MixedPrecision
from transformers import AutoModelForCausalLM

from storygen.errors import StorygenError
from storygen.inspect import report
from storygen.models.export import export_backbone
from storygen.models.trained import load_trained_model
from storygen.train import train
from tests.conftest import TINY_RUN, compose_config, run_python

TINY_MISTRAL = [*TINY_RUN, "model=mistral_tiny_lora"]


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt2", "trainable params: 124,439,808 || all params: 124,439,808 || trainable%: 100.00%"),
        (
            "mistral_lora",
            "trainable params: 41,943,040 || all params: 3,794,014,208 || trainable%: 1.11%",
        ),
    ],
)
def test_inspect_prints_the_study_parameter_counts_offline(model, expected, tmp_path):
    text = report(compose_config([f"model={model}"], tmp_path, config_name="inspect"))
    assert expected in text.splitlines()
    assert "optimizer state" in text and "activations" in text


def test_inspect_reports_the_unquantized_total(tmp_path):
    text = report(compose_config(["model=mistral_lora"], tmp_path, config_name="inspect"))
    assert "unquantized all params: 7,283,675,136 (7,241,732,096 base + 41,943,040 adapter)" in text


@pytest.mark.smoke
def test_tiny_mistral_is_really_4bit_and_lora_training_lowers_the_loss(tmp_path):
    model = instantiate(compose_config(TINY_MISTRAL, tmp_path).model)
    backbone = model.backbone
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in backbone.modules())
    batch = model.tokenizer(
        ["Once upon a time, a small red fox played in the snow."] * 4, return_tensors="pt"
    )
    batch["labels"] = batch["input_ids"].clone()
    optimizer = torch.optim.AdamW([p for p in backbone.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        loss = backbone(**batch).loss
        loss.backward()
        if not losses:
            with_grad = {n for n, p in backbone.named_parameters() if p.grad is not None}
            assert with_grad and all("lora_" in name for name in with_grad)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1.0


def test_validation_and_checkpoints_leave_the_4bit_base_as_it_was_loaded(tmp_path):
    """On a CPU with AVX512-BF16 (as here), bitsandbytes repacked the 4-bit weights for its
    inference kernels at a no-grad eval forward and unpacked them, not exactly, at each
    `state_dict`: after its first validation a run trained on another base than the one a
    resume rebuilds. (On other CPUs bitsandbytes never repacks, and this passes regardless.)"""
    backbone = instantiate(compose_config(TINY_MISTRAL, tmp_path).model.backbone)
    ids = torch.arange(1, 33).unsqueeze(0)
    loaded = {key: value.clone() for key, value in backbone.state_dict().items()}
    loss = backbone(input_ids=ids, labels=ids).loss.item()
    backbone.eval()
    with torch.no_grad():  # as validation and generation run
        backbone(input_ids=ids)
    backbone.train()
    assert backbone(input_ids=ids, labels=ids).loss.item() == loss
    saved = backbone.state_dict()  # as a checkpoint save does
    assert [key for key in loaded if not torch.equal(loaded[key], saved[key])] == []
    assert backbone(input_ids=ids, labels=ids).loss.item() == loss


def test_lora_checkpoint_holds_only_adapters_and_reloads_identically(tmp_path):
    cfg = compose_config(TINY_MISTRAL, tmp_path)
    train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert state and all("lora_" in key for key in state)
    base_size = (tmp_path / "base_init" / "model.safetensors").stat().st_size
    assert ckpt.stat().st_size < 0.05 * base_size

    # simulate trained adapters, save as Lightning does, reload onto a fresh base
    trained = instantiate(cfg.model)
    torch.manual_seed(0)
    for parameter in trained.parameters():
        if parameter.requires_grad:
            parameter.data.normal_(std=0.05)
    checkpoint = {"state_dict": trained.state_dict()}
    trained.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "moved.ckpt")
    reloaded = load_trained_model(str(tmp_path / "moved.ckpt"), cfg.model)
    ids = trained.tokenizer("The fox ran home.", return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(trained.backbone(**ids).logits, reloaded.backbone(**ids).logits)


def test_export_loads_with_plain_peft_and_the_merge_matches(tmp_path):
    cfg = compose_config(TINY_MISTRAL, tmp_path)
    model = instantiate(cfg.model)
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data.normal_(std=0.05)
    result = export_backbone(model.backbone, model.tokenizer, tmp_path / "export", merge=True)
    assert (result.model_dir / "adapter_config.json").is_file()
    assert (result.model_dir / "adapter_model.safetensors").is_file()
    assert result.merge_max_abs_diff is not None and result.merge_max_abs_diff < 1e-4
    script = f"""
import torch, sys
assert "storygen" not in sys.modules
from peft import AutoPeftModelForCausalLM
from transformers import AutoModelForCausalLM, AutoTokenizer
tok = AutoTokenizer.from_pretrained("{result.model_dir}")
ids = tok("A cat sat on a mat.", return_tensors="pt")
adapter = AutoPeftModelForCausalLM.from_pretrained("{result.model_dir}", dtype=torch.float32)
merged = AutoModelForCausalLM.from_pretrained("{result.merged_dir}", dtype=torch.float32)
with torch.no_grad():
    print((adapter(**ids).logits - merged(**ids).logits).abs().max().item())
"""
    out = run_python(script, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-4
    config = json.loads((result.model_dir / "adapter_config.json").read_text())
    assert config["r"] == 16 and Path(config["base_model_name_or_path"]).is_dir()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["~model.backbone.lora"], "4-bit quantized weights cannot be trained"),
        (
            ["model.backbone.lora.target_modules=[q_proj,c_attn]"],
            "['c_attn'], which MistralForCausalLM",
        ),
        (["data.max_length=4096"], "data.max_length=4096 is above the model's context of 512"),
        (["trainer.precision=bf16-mixed"], "trainer.precision=bf16-mixed on a CPU"),
    ],
    ids=["4bit-without-lora", "unknown-lora-target", "max-length-above-context", "bf16-on-cpu"],
)
def test_incompatible_model_options_are_refused_with_the_fix(overrides, message, tmp_path):
    with pytest.raises(Exception) as info:
        train(compose_config([*TINY_MISTRAL, *overrides], tmp_path))
    from storygen.errors import find_user_error

    error = find_user_error(info.value)
    assert error is not None and message in str(error)


@pytest.mark.parametrize(
    ("model", "other"),
    [("gpt2_tiny", "mistralai/Mistral-7B-v0.1"), ("mistral_tiny_lora", "openai-community/gpt2")],
)
def test_an_offline_tokenizer_refuses_a_model_it_does_not_stand_in_for(model, other, tmp_path):
    from storygen.errors import find_user_error

    cfg = compose_config([*TINY_RUN, f"model={model}"], tmp_path)
    instantiate(cfg.model.tokenizer)  # the name inherited from the hub config is its own
    cfg.model.tokenizer.name_or_path = other
    with pytest.raises(Exception) as info:
        instantiate(cfg.model.tokenizer)
    error = find_user_error(info.value)
    assert error is not None
    assert f"model.tokenizer.name_or_path={other}: build_offline_" in str(error)


def test_a_checkpoint_from_another_architecture_is_refused(tmp_path):
    gpt2 = instantiate(compose_config(TINY_RUN, tmp_path).model)
    torch.save({"state_dict": gpt2.state_dict()}, tmp_path / "gpt2.ckpt")
    cfg = compose_config(TINY_MISTRAL, tmp_path)
    with pytest.raises(StorygenError, match="does not fit this model"):
        load_trained_model(str(tmp_path / "gpt2.ckpt"), cfg.model)
    deeper_gpt2 = compose_config([*TINY_RUN, "model.backbone.architecture.n_layer=3"], tmp_path)
    with pytest.raises(StorygenError, match="does not fit this model"):
        load_trained_model(str(tmp_path / "gpt2.ckpt"), deeper_gpt2.model)


def test_weight_decay_skips_biases_and_norm_weights(tmp_path):
    from storygen.models.module import parameter_groups

    model = instantiate(compose_config(TINY_RUN, tmp_path).model)
    decay, no_decay = parameter_groups(model.backbone)
    names = {id(p): n for n, p in model.backbone.named_parameters()}
    assert "weight_decay" not in decay and no_decay["weight_decay"] == 0.0
    assert all(
        names[id(p)].endswith(("bias", "ln_1.weight", "ln_2.weight", "ln_f.weight"))
        for p in no_decay["params"]
    )
    assert any(names[id(p)].endswith("c_attn.weight") for p in decay["params"])


@pytest.mark.parametrize("overrides", [TINY_RUN, TINY_MISTRAL], ids=["gpt2", "mistral-qlora"])
def test_a_pretrained_backbone_comes_back_in_train_mode(overrides, tmp_path):
    """from_pretrained returns eval mode; training needs dropout on in every module."""
    backbone_cfg = compose_config(overrides, tmp_path).model.backbone
    pretrained_dir = tmp_path / "pretrained"
    AutoModelForCausalLM.from_config(instantiate(backbone_cfg.architecture)).save_pretrained(
        pretrained_dir
    )
    backbone = instantiate(
        backbone_cfg, name_or_path=str(pretrained_dir), architecture=None, init_dir=None
    )
    assert [name for name, module in backbone.named_modules() if not module.training] == []


@pytest.mark.slow
def test_a_compiled_backbone_gives_the_eager_loss_and_gradients(tmp_path):
    cfg = compose_config(TINY_RUN, tmp_path)
    eager = instantiate(cfg.model)
    compiled = instantiate(cfg.model, compile_backbone=True)
    compiled.load_state_dict(eager.state_dict())
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    ids = torch.randint(0, 50257, (2, 24), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    torch._dynamo.reset()
    for model in (eager, compiled):
        model.eval()  # no dropout: the two must see the same network
        model(**batch).backward()
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile
    torch.testing.assert_close(compiled(**batch), eager(**batch), rtol=1e-5, atol=1e-5)
    for (name, grad), (_, compiled_grad) in zip(
        ((n, p.grad) for n, p in eager.named_parameters()),
        ((n, p.grad) for n, p in compiled.named_parameters()),
        strict=True,
    ):
        torch.testing.assert_close(compiled_grad, grad, rtol=1e-4, atol=1e-5, msg=name)


def fit_three_steps(
    tmp_path: Path, fused: bool, precision_plugin, clip: float | None = 0.1
) -> dict[str, torch.Tensor]:
    overrides = [
        "data.max_train_samples=12",
        "data.batch_size=4",
        "data.max_length=64",  # fp16 matmuls are slow on a CPU; the check needs no more
        f"model.optimizer.fused={fused}",
    ]
    cfg = compose_config([*TINY_RUN, *overrides], tmp_path)
    tokenizer = instantiate(cfg.model.tokenizer)
    torch.manual_seed(0)
    model = instantiate(cfg.model, tokenizer=tokenizer)
    L.Trainer(
        accelerator="cpu",
        plugins=[precision_plugin],
        # the tiny model's gradient norms are above 1 in these steps: this clips every step,
        # while each element's gradient stays far above AdamW's eps (a 1e-3 clip put them near
        # it, where fused and foreach AdamW round one element in millions 1% apart)
        gradient_clip_val=clip,
        max_steps=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    ).fit(model, datamodule=instantiate(cfg.data, tokenizer=tokenizer))
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_fused_adamw_clips_gradients_like_the_default_adamw(precision, tmp_path):
    """Lightning refuses to clip for fused AdamW under mixed precision; StoryLM clips it."""

    def plugin() -> MixedPrecision:  # fp16 gets a GradScaler, as on a GPU
        scaler = torch.amp.GradScaler("cpu") if precision == "16-mixed" else None
        return MixedPrecision(precision, device="cpu", scaler=scaler)

    fused = fit_three_steps(tmp_path / "fused", True, plugin())
    default = fit_three_steps(tmp_path / "default", False, plugin())
    for name, weight in default.items():
        torch.testing.assert_close(fused[name], weight, rtol=1e-4, atol=1e-5, msg=name)
    # and clipping changed the run (by ~5e-4, far beyond the tolerance above)
    unclipped = fit_three_steps(tmp_path / "unclipped", False, plugin(), clip=None)
    assert max((unclipped[n] - w).abs().max().item() for n, w in default.items()) > 1e-4


@pytest.mark.smoke
@pytest.mark.parametrize("overrides", [TINY_RUN, TINY_MISTRAL], ids=["gpt2", "mistral-qlora"])
def test_gradient_checkpointing_is_non_reentrant_and_gives_the_same_gradients(overrides, tmp_path):
    cfg = compose_config(overrides, tmp_path)
    ids = torch.randint(0, 1000, (2, 16), generator=torch.Generator().manual_seed(0))
    instantiate(cfg.model.backbone)  # saves the random base init both builds below load
    gradients = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        backbone = instantiate(cfg.model.backbone, gradient_checkpointing=checkpointing)
        torch.manual_seed(1)  # the same dropout masks; the recompute replays them
        backbone(input_ids=ids, labels=ids).loss.backward()
        gradients.append({n: p.grad for n, p in backbone.named_parameters() if p.requires_grad})
    checkpointed = [m for m in backbone.modules() if hasattr(m, "_gradient_checkpointing_func")]
    assert checkpointed and all(
        m._gradient_checkpointing_func.keywords == {"use_reentrant": False} for m in checkpointed
    )
    for name, gradient in gradients[0].items():
        torch.testing.assert_close(gradients[1][name], gradient, msg=name)


def test_4bit_weights_land_on_the_trainers_device_not_the_hosts(tmp_path, monkeypatch):
    """On a CUDA host, `trainer=cpu` (the tests) must quantize onto the CPU, and the fused
    CUDA AdamW must stay off; `trainer=gpu` and `auto` pick the GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = compose_config(TINY_MISTRAL, tmp_path)
    assert cfg.model.backbone.device == "cpu" and cfg.model.optimizer.fused is False
    backbone = instantiate(cfg.model.backbone)
    assert {p.device.type for p in backbone.parameters()} == {"cpu"}
    for trainer in ("gpu", "default"):
        gpu_cfg = compose_config([*TINY_MISTRAL, f"trainer={trainer}"], tmp_path)
        assert gpu_cfg.model.backbone.device == "cuda" and gpu_cfg.model.optimizer.fused is True
