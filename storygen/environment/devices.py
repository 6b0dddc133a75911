"""The device a run trains on and the precision that suits it, probed when the config resolves
(`${storygen.default_precision:}`, `${storygen.device:...}`, ...)."""

from __future__ import annotations


def default_precision() -> str:
    """Mixed precision on a GPU, fp32 on a CPU (bf16 matmul crawls there)."""
    import torch

    return gpu_precision() if torch.cuda.is_available() else "32-true"


def gpu_precision() -> str:
    """bf16 mixed precision, or fp16 mixed on a GPU without bf16 units (T4, V100): torch's
    default check also says yes where bf16 is only emulated, many times slower."""
    return "16-mixed" if gpu_lacks_bf16() else "bf16-mixed"


def half_dtype() -> str:
    """The compute dtype of 4-bit layers: bfloat16, or float16 on a GPU without bf16."""
    return "float16" if gpu_lacks_bf16() else "bfloat16"


def gpu_lacks_bf16() -> bool:
    import torch

    return torch.cuda.is_available() and not torch.cuda.is_bf16_supported(including_emulation=False)


def on_gpu(accelerator: str = "auto") -> bool:
    """For settings only a GPU has, such as AdamW's fused CUDA kernel (`fused: true`): the
    trainer's accelerator decides (`trainer=cpu` on a GPU host trains on the CPU)."""
    return device_of(accelerator) == "cuda"


def device_of(accelerator: str = "auto") -> str:
    """The device a Lightning accelerator name trains on: `cuda` or `cpu` (`mps` as given).

    4-bit weights are quantized while loading, onto their final device, so the loader must
    know the trainer's device before the trainer moves anything: a CUDA host running
    `trainer=cpu` (the tests) keeps them on the CPU.
    """
    import torch

    accelerator = str(accelerator).lower()
    if accelerator in ("gpu", "cuda"):
        return "cuda"
    if accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "mps" if accelerator == "mps" else "cpu"


def enable_tf32() -> None:
    """TF32 for the fp32 matmuls mixed precision leaves on a CUDA GPU. CUDA's switch only:
    the precision-wide `torch.set_float32_matmul_precision` would change CPU matmuls too."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = True
