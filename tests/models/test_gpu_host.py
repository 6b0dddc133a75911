"""What a CUDA host changes for a run on the CPU (`trainer=cpu`, as every test runs): nothing."""

from __future__ import annotations

import torch

from storygen.run.record import RunRecord


def test_a_cpu_run_on_a_cuda_host_records_its_cpu_peak(monkeypatch):
    """Pinned memory or RNG state initializes CUDA without a byte allocated on the GPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *args: 0)
    record = RunRecord(task_name="train", overrides=[], optimized_metric="val/loss")
    record.finish()
    assert record.peak_memory_kind == "max_rss" and record.peak_memory_bytes > 0
