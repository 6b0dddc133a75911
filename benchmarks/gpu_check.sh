#!/usr/bin/env bash
# Everything a first GPU session should learn, in <= 9 minutes on one H200, nothing downloaded:
#
#   bash benchmarks/gpu_wheels.sh            # here, once: .whl/ (what the GPU image lacks)
#   device run, carry [".whl"]:  bash benchmarks/gpu_check.sh
#   bash benchmarks/gpu_check.sh --cpu       # tiny shapes on the CPU: proves the steps compose
#
# Steps, most informative first, each writing under $OUT as it finishes (a timeout still
# returns what ran): env.json (CUDA, bitsandbytes nf4 matmul and paged 8-bit AdamW on the
# device, the precision resolvers); train.txt (the real `python -m storygen.train
# model=mistral_lora trainer=gpu` on a local random-init Mistral of the real width and 2
# layers, through config overrides only: validation generation, a checkpoint with paged
# optimizer state, a resume from it, the adapter-only reload for test, export, generate from
# the export); gpu_7b.json (the 7B shape at batch 2 and 8 x 512: s/step, tokens/s, memory
# allocated/reserved/in use vs the inspect estimate); pytest.log and pytest.xml (`pytest
# tests/models`, on the CPU beside the train steps);
# gpu.json (benchmarks/gpu.py: GPT-2 small and a ~0.85B QLoRA). summary.txt has one line per
# step (exit code, seconds); check.log everything printed.
set -uo pipefail
cd "$(dirname "$0")/.."
CPU=0
[[ "${1:-}" == "--cpu" ]] && CPU=1
OUT=${OUT:-$PWD/benchmarks/results/gpu_check$([[ $CPU == 1 ]] && echo _cpu)}
mkdir -p "$OUT"
: >"$OUT/summary.txt"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONPATH=$PWD
BUDGET_S=$([[ $CPU == 1 ]] && echo 7200 || echo 540)
SCALE=$([[ $CPU == 1 ]] && echo 10 || echo 1) # the dry run's CPU is far slower than the GPU
START=$(date +%s)

if [[ $CPU == 0 && -d .whl ]]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl >>"$OUT/check.log" 2>&1 &&
        export PYTHONPATH=/tmp/site:$PWD
fi
if [[ $CPU == 0 ]] && (($(df -k --output=avail /dev/shm | tail -1) > 20 * 1024 * 1024)); then
    WORK=$(mktemp -d /dev/shm/storygen-check.XXXX) # 7B in bf16 is 14.5 GB: RAM-backed is fastest
else
    WORK=$(mktemp -d /tmp/storygen-check.XXXX)
fi
trap 'rm -rf "$WORK"' EXIT

# step NAME SECONDS COMMAND...: run with a timeout inside the overall budget, log, summarize
step() {
    local name=$1 limit=$(($2 * SCALE)) left began rc
    shift 2
    left=$((BUDGET_S - ($(date +%s) - START)))
    ((limit > left)) && limit=$left
    if ((limit < 20)); then
        echo "$name skipped: budget spent" | tee -a "$OUT/summary.txt"
        return
    fi
    began=$(date +%s)
    echo "=== $name (limit ${limit}s)" >>"$OUT/check.log"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$OUT/check.log"
    rc=${PIPESTATUS[0]}
    echo "$name rc=$rc $(($(date +%s) - began))s" | tee -a "$OUT/summary.txt"
}

if [[ $CPU == 1 ]]; then
    TRAINER=cpu
    TINY=(hidden_size=64 intermediate_size=128 num_attention_heads=4 num_key_value_heads=2)
    # no CUDA: fp32 compute, torch's AdamW (paged 8-bit AdamW needs CUDA)
    ON_CPU=(model.optimizer._target_=torch.optim.AdamW
        model.backbone.quantization.bnb_4bit_compute_dtype=float32)
    RUN=(data.batch_size=2 data.max_length=128 data.max_train_samples=16 trainer.max_steps=4
        trainer.val_check_interval=2 data.num_workers=0)
    RESUME_STEPS=6
    SEVEN_B=(--cpu --steps 2 --warmup-steps 1)
    GPU_PY=(--cpu --gpt2-steps 2 --qlora-steps 2 --warmup-steps 1)
    PYTEST_K=(-k "inspect or trainers_device")
    PYTEST_S=60
else
    TRAINER=gpu
    TINY=()
    ON_CPU=()
    RUN=(data.batch_size=8 data.max_length=512 data.max_train_samples=64 trainer.max_steps=10
        trainer.val_check_interval=5 data.num_workers=2)
    RESUME_STEPS=12
    SEVEN_B=(--steps 8 --warmup-steps 3)
    GPU_PY=(--gpt2-steps 20 --qlora-steps 10 --warmup-steps 3)
    PYTEST_K=()
    PYTEST_S=240
fi

step env 60 python3 - "$OUT/env.json" <<'PY'
import json, sys, time
import torch
info = {"torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available()}
def save():
    open(sys.argv[1], "w").write(json.dumps(info, indent=2, default=str) + "\n")
import bitsandbytes as bnb, lightning, peft, transformers
info |= {"bitsandbytes": bnb.__version__, "transformers": transformers.__version__,
         "peft": peft.__version__, "lightning": lightning.__version__}
from importlib.metadata import PackageNotFoundError, version
def installed(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return None
info["packages"] = {name: installed(name) for name in (
    "datasets", "pyarrow", "huggingface-hub", "protobuf", "wandb", "pydantic", "numpy",
    "hydra-core", "torchmetrics", "accelerate", "sentencepiece", "tokenizers")}
from storygen.environment.devices import default_precision, device_of, gpu_precision, half_dtype
info["resolvers"] = {"default_precision": default_precision(), "gpu_precision": gpu_precision(),
                     "half_dtype": half_dtype(), "device_of(auto)": device_of("auto")}
dev = "cuda" if torch.cuda.is_available() else "cpu"
if dev == "cuda":
    props = torch.cuda.get_device_properties(0)
    torch.zeros(1, device=dev)
    free, total = torch.cuda.mem_get_info()
    info |= {"gpu": props.name, "capability": f"{props.major}.{props.minor}",
             "gpu_memory_bytes": total, "native_bf16": torch.cuda.is_bf16_supported(False),
             "cuda_context_bytes": total - free - torch.cuda.memory_reserved()}
save()
dtype = torch.bfloat16 if dev == "cuda" else torch.float32
layer = bnb.nn.Linear4bit(1024, 4096, bias=False, compute_dtype=dtype, quant_type="nf4",
                          compress_statistics=True).to(dev)
x = torch.randn(8, 1024, device=dev, dtype=dtype)
weight = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).to(dtype)
info["nf4_matmul_max_abs_diff"] = (layer(x) - x @ weight.t()).abs().max().item()
if dev == "cuda":
    p = torch.nn.Parameter(torch.randn(4096, 16, device=dev))
    optimizer = bnb.optim.PagedAdamW8bit([p], lr=1e-3)
    p.grad = torch.randn_like(p)
    optimizer.step()
    state = optimizer.state[p]
    info["paged_adamw8bit_state"] = {k: [str(v.dtype), getattr(v, "is_paged", False)]
                                     for k, v in state.items() if torch.is_tensor(v)}
    info["tf32_matmul_by_default"] = torch.backends.cuda.matmul.allow_tf32
save()
print(json.dumps(info, indent=2, default=str))
PY

# The tests run on the CPU (trainer=cpu), so they run beside the GPU steps that only check
# correctness, and are waited for before the timed ones.
began_pytest=$(date +%s)
OMP_NUM_THREADS=8 timeout --kill-after=10 $((PYTEST_S * SCALE)) python3 -m pytest tests/models -x \
    -q -rfE -p no:cacheprovider "${PYTEST_K[@]}" --junitxml="$OUT/pytest.xml" \
    >"$OUT/pytest.log" 2>&1 &
PYTEST_PID=$!

# --- the real entry point on a local random-init Mistral (real width, 2 layers) ---
{
    python3 benchmarks/mistral_init.py "$WORK/mistral" --layers 2 "${TINY[@]}" \
        $([[ $CPU == 1 ]] && echo --device cpu --dtype float32) 2>&1 | tail -1
} >"$OUT/train.txt"
TRAIN=(model=mistral_lora "trainer=$TRAINER" "model.backbone.name_or_path=$WORK/mistral"
    "model.tokenizer.name_or_path=$WORK/mistral" "${ON_CPU[@]}"
    data=tinystories data.corpus.source=sample data.max_eval_samples=8
    "${RUN[@]}" trainer.log_every_n_steps=1 trainer.enable_progress_bar=false
    callbacks.story_metrics.num_prompts=4 callbacks.story_metrics.num_test_prompts=4
    callbacks.story_metrics.generation.max_new_tokens=64 logger=csv "hydra.run.dir=$WORK/run")
step train 150 python3 -m storygen.train "${TRAIN[@]}"
step resume 60 python3 -m storygen.train "${TRAIN[@]}" "trainer.max_steps=$RESUME_STEPS" \
    ckpt_path=last test=false export=false
step generate 45 python3 -m storygen.generate "ckpt_path=$WORK/run/export/adapter" \
    model=mistral_lora 'prompt="Once upon a time, a small fox"' generation.max_new_tokens=24
step checkpoint 30 python3 - "$WORK/run" <<'PY' | tee -a "$OUT/train.txt"
import json, sys
from pathlib import Path
import torch
run = Path(sys.argv[1])
ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
weights = ckpt["state_dict"]
tensors = [v for s in ckpt["optimizer_states"][0]["state"].values() for v in s.values()
           if torch.is_tensor(v)]
print(json.dumps({
    "global_step": ckpt.get("global_step"),
    "state_dict_tensors": len(weights),
    "adapter_only": all("lora_" in key for key in weights),
    "optimizer_state_tensors": len(tensors),
    "optimizer_state_dtypes": sorted({str(t.dtype) for t in tensors}),
    "optimizer_state_bytes": sum(t.numel() * t.element_size() for t in tensors),
    "export": sorted(p.name for p in (run / "export").rglob("*") if p.is_file()),
    "run_status": json.loads((run / "run.json").read_text()).get("status"),
}, indent=2))
print((run / "csv" / "metrics.csv").read_text())
PY

wait "$PYTEST_PID"
echo "pytest rc=$? $(($(date +%s) - began_pytest))s (beside train)" | tee -a "$OUT/summary.txt"
rm -rf "$WORK/mistral"
step gpu_7b 240 python3 benchmarks/gpu_7b.py "${SEVEN_B[@]}" --init-dir "$WORK" \
    --out "$OUT/gpu_7b.json"
step gpu_py 100 python3 benchmarks/gpu.py "${GPU_PY[@]}" --out "$OUT/gpu.json"
echo "total $(($(date +%s) - START))s" | tee -a "$OUT/summary.txt"
