"""The memory model against the measured peak of a real training step of tiny models.

Measured with torch's profiler (`profile_memory=True`): the CPU allocator reports, with each
allocation and free, the bytes allocated since profiling began; their maximum over the step,
plus the tensors that live across steps (weights, buffers, optimizer state), is the step's
peak of live tensor bytes, what `torch.cuda.max_memory_allocated` is on a GPU.
"""

from __future__ import annotations

import gc
import json

import pytest
import torch
from hydra.utils import instantiate
from torch.profiler import ProfilerActivity, profile

from storygen.inspect import memory_estimate
from storygen.models.accounting import MemoryEstimate, count_parameters
from storygen.models.loader import build_skeleton
from storygen.models.module import parameter_groups
from tests.conftest import ROOT, compose_config

TOLERANCE = 0.15  # the estimate is within 15% of the measured peak
SMALL_VOCAB_MISTRAL = [
    "model=mistral_tiny_lora",
    "model.backbone.architecture.hidden_size=256",
    "model.backbone.architecture.intermediate_size=512",
    "model.backbone.architecture.num_hidden_layers=4",
    "model.backbone.architecture.vocab_size=1000",
    "model.backbone.architecture.bos_token_id=1",
    "model.backbone.architecture.eos_token_id=2",
]
CASES = {
    # the loss dominates: 50,257 logits per token
    "gpt2-full": ["model=gpt2_tiny"],
    "mistral-qlora": ["model=mistral_tiny_lora"],
    # the layers dominate: wider, deeper, 1,000 words
    "gpt2-full-layers": [
        "model=gpt2_tiny",
        "model.backbone.architecture.n_embd=256",
        "model.backbone.architecture.n_layer=4",
        "model.backbone.architecture.vocab_size=1000",
    ],
    "mistral-qlora-layers": SMALL_VOCAB_MISTRAL,
    "mistral-qlora-checkpointed": [
        *SMALL_VOCAB_MISTRAL,
        "model.backbone.gradient_checkpointing=true",
    ],
}


def live_bytes(tensors) -> int:
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


def measured_peak(model, batch_size: int, seq_len: int, tmp_path) -> int:
    """Peak live tensor bytes of the second training step (the first creates the optimizer
    state), stepping as Lightning does: zero_grad(set_to_none), loss, backward, clip, step."""
    backbone = model.backbone
    optimizer = model.optimizer_factory(parameter_groups(backbone))
    trainable = [p for p in backbone.parameters() if p.requires_grad]
    generator = torch.Generator().manual_seed(0)

    def step() -> None:
        ids = torch.randint(
            0, backbone.config.vocab_size, (batch_size, seq_len), generator=generator
        )
        optimizer.zero_grad(set_to_none=True)
        batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
        model.training_step(batch, 0).backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()

    model.log = lambda *args, **kwargs: None  # no trainer to log to
    step()
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    persistent = live_bytes([*backbone.parameters(), *backbone.buffers(), *state])
    # no garbage collection inside the measured step: one that happened to free tensors there
    # would lower the running total the peak is read from, by when the collector ran
    gc.collect()
    gc.disable()
    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            step()
    finally:
        gc.enable()
    trace = tmp_path / "trace.json"
    prof.export_chrome_trace(str(trace))
    events = [
        e["args"] for e in json.loads(trace.read_text())["traceEvents"] if e["name"] == "[memory]"
    ]
    # "Total Allocated" runs on from earlier profiles in this process: measure from the first
    start = events[0]["Total Allocated"] - events[0]["Bytes"]
    return persistent + max(e["Total Allocated"] for e in events) - start


def inspect_estimate(cfg) -> MemoryEstimate:
    """The memory estimate `python -m storygen.inspect` prints for this config."""
    architecture = instantiate(cfg.model.backbone.architecture)
    lora = instantiate(cfg.model.backbone.lora) if cfg.model.backbone.get("lora") else None
    skeleton = build_skeleton(architecture, lora)
    quantized = cfg.model.backbone.get("quantization") is not None
    return memory_estimate(
        cfg, architecture, skeleton, count_parameters(skeleton, assume_4bit=quantized)
    )[1]


@pytest.mark.parametrize("case", CASES)
def test_the_memory_estimate_is_within_tolerance_of_the_measured_peak(case, tmp_path):
    overrides = [*CASES[case], "trainer=cpu", "data.batch_size=4", "data.max_length=128"]
    cfg = compose_config(overrides, tmp_path, config_name="inspect")
    estimate = inspect_estimate(cfg)
    torch.manual_seed(0)
    model = instantiate(cfg.model, tokenizer=instantiate(cfg.model.tokenizer))
    measured = measured_peak(model, 4, 128, tmp_path)
    ratio = estimate.peak_allocated / measured
    assert abs(ratio - 1) < TOLERANCE, (
        f"{case}: estimate {estimate.peak_allocated / 2**20:.1f} MiB ({estimate.peak_phase}), "
        f"measured {measured / 2**20:.1f} MiB, ratio {ratio:.3f}"
    )


README_ESTIMATES = {
    # a line of the README: the inspect command it shows the total of
    "| GPT-2 · WritingPrompts": ["experiment=reproduction", "reproduction_run=gpt2_writingprompts"],
    "| Mistral-7B · TinyStories": [
        "experiment=reproduction",
        "reproduction_run=mistral_tinystories",
    ],
    "| Mistral-7B · WritingPrompts": [
        "experiment=reproduction",
        "reproduction_run=mistral_writingprompts",
    ],
    "#   peak allocated (layer backward)": ["model=mistral_lora", "data.batch_size=2"],
}


@pytest.mark.parametrize("line_start", README_ESTIMATES)
def test_the_readmes_memory_figures_are_what_inspect_estimates(line_start, tmp_path):
    """The README quotes inspect's totals for the study's runs: a change to the memory model
    must change them too."""
    readme = (ROOT / "README.md").read_text().splitlines()
    (line,) = [line for line in readme if line.startswith(line_start)]
    cfg = compose_config(
        [*README_ESTIMATES[line_start], "trainer=gpu"], tmp_path, config_name="inspect"
    )
    estimate = inspect_estimate(cfg)
    assert f"{estimate.total / 2**30:.2f} GiB" in line
