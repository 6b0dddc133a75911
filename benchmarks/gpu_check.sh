#!/usr/bin/env bash
# The first GPU device check: storygen's headline numbers on a bare, offline GPU machine, each
# saved under $OUT as soon as it exists.
#
#   bash benchmarks/gpu_wheels.sh             # here, once: .whl/, what the GPU image lacks
#   bash benchmarks/gpu_check.sh --guard      # here: what travels fits (tree + .whl/ <= 60 MiB,
#                                             #   $OUT <= 8 files), else fail before sending
#   bash benchmarks/gpu_check.sh --simulate   # here: the bare GPU image on the CPU (below)
#   device run, carry [".whl"], timeout_s 480:  bash benchmarks/gpu_check.sh
#   a rerun of failed steps, same carry:        bash benchmarks/gpu_check.sh STEP [STEP ...]
#
# Steps, each under a fixed budget (s; 420 in all, so a rerun of a failed step still fits the
# 15 device minutes), in the order the project needs their numbers:
#   ready       45  install .whl/ (pip --no-index --no-deps, from that folder alone), import
#                   every module the steps need (benchmarks/gpu_ready.py); the check ends here
#                   if that fails, the reason in 0_ready.json
#   gpt2        30  GPT-2 small full fine-tuning, 16 x 1024: tokens/s, MFU against the matmul
#                   peak measured in the same run and against the datasheet's (benchmarks/gpu.py)
#   qlora_7b   115  Mistral-7B's shape in QLoRA through storygen at batch 2 and 8 x 512: tokens/s,
#                   peak memory against storygen.inspect's estimate (benchmarks/gpu_7b.py)
#   peer        65  the same QLoRA step in a plain transformers + peft + bitsandbytes loop on the
#                   same batches and init: tokens/s, memory, storygen/peer (benchmarks/gpu_peer.py)
#   fused       55  model.fused_loss=liger|cce: loss and gradients against the plain loss, tokens/s
#                   and peak memory on GPT-2 small (benchmarks/gpu_fused.py)
#   train_eval  75  `python -m storygen.train` end to end (Mistral, real width, 2 layers, bf16),
#                   then `python -m storygen.evaluate` on its checkpoint against the run's own
#                   test stage (benchmarks/gpu_train_eval.py)
#   cuda_tests  35  the tests that skip or differ without CUDA
# $OUT holds only: 0_ready.json, 1_results.jsonl (a JSON line per result, written as each
# exists; a failed step adds one with its exit code and the end of its output), 2_summary.txt
# (each step's exit code and seconds), 3_check.log (everything printed).
#
# --simulate: a fresh Python 3.12 venv (GPU_IMAGE_VENV, default /tmp/storygen-gpu-image) holding
# only benchmarks/gpu_image.txt's packages at its versions plus the image's unread-version ones
# (torch 2.11.0 from the registry is a CUDA build; it runs on the CPU), reused while its `pip
# freeze` is unchanged; then --guard; then the tree copied as the device run copies it (tracked
# and untracked-not-ignored files, plus .whl/) and this script run there with a hard-linked
# copy of that venv as python3 (step 0 installs into it, the venv stays bare), a fresh HOME
# (no caches), and tiny shapes in fp32 on the CPU. Ends with the step summary and the files
# under $OUT (GPU_CHECK_SIM_DIR keeps them; default a new /tmp/storygen-gpu-sim.*). Step
# names after --simulate simulate a rerun of those steps.
set -uo pipefail
cd "$(dirname "$0")/.."
STEPS=(ready gpt2 qlora_7b peer fused train_eval cuda_tests)
declare -A BUDGET=([ready]=45 [gpt2]=30 [qlora_7b]=115 [peer]=65 [fused]=55 [train_eval]=75
    [cuda_tests]=35)
OUT_FILES=(0_ready.json 1_results.jsonl 2_summary.txt 3_check.log)
MAX_MIB=60
MAX_OUT_FILES=8
# on the image, versions unread (benchmarks/gpu_image.txt)
GPU_IMAGE_UNREAD=(lightning peft pyarrow pandas scipy matplotlib pytest pytest-xdist hypothesis
    tiktoken)

# What the device run copies: tracked files, untracked files git does not ignore, and .whl/.
travelling_files() {
    git ls-files -z -co --exclude-standard | while IFS= read -r -d '' f; do
        [[ -f $f ]] && printf '%s\0' "$f"
    done
    find .whl -type f -print0
}

guard() {
    local bytes whl budget=0
    [[ -d .whl ]] || { echo "guard: no .whl/ (bash benchmarks/gpu_wheels.sh)"; return 1; }
    bytes=$(travelling_files | du -cb --files0-from=- | tail -1 | cut -f1)
    whl=$(du -sb .whl | cut -f1)
    for step in "${STEPS[@]}"; do budget=$((budget + BUDGET[$step])); done
    echo "guard: tree $(((bytes - whl) / 1048576)) MiB + .whl/ $((whl / 1048576)) MiB =" \
        "$(awk "BEGIN {printf \"%.1f\", $bytes / 1048576}") MiB (limit $MAX_MIB);" \
        "\$OUT ${#OUT_FILES[@]} files (limit $MAX_OUT_FILES); steps ${budget} s (limit 420)"
    if ((bytes > MAX_MIB * 1048576 || ${#OUT_FILES[@]} > MAX_OUT_FILES || budget > 420)); then
        echo "guard: FAILED: do not send"
        return 1
    fi
}

simulate() {
    local venv=${GPU_IMAGE_VENV:-/tmp/storygen-gpu-image}
    local python312=${PYTHON312:-$(pyenv root)/versions/3.12.1/bin/python3.12}
    local sim rc
    if [[ ! -f $venv/image-freeze.txt ]] ||
        ! cmp -s <("$venv/bin/python" -m pip freeze 2>/dev/null) "$venv/image-freeze.txt"; then
        echo "simulate: building the GPU image in $venv"
        rm -rf "$venv"
        "$python312" -m venv "$venv" &&
            "$venv/bin/python" -m pip install -q -r <(grep -v '^#' benchmarks/gpu_image.txt) \
                "${GPU_IMAGE_UNREAD[@]}" &&
            "$venv/bin/python" -m pip freeze >"$venv/image-freeze.txt" || return 1
    fi
    [[ -d .whl ]] || bash benchmarks/gpu_wheels.sh || return 1
    guard || return 1
    sim=${GPU_CHECK_SIM_DIR:-$(mktemp -d /tmp/storygen-gpu-sim.XXXX)}
    rm -rf "$sim/tree" "$sim/out" "$sim/home"
    mkdir -p "$sim/tree" "$sim/out" "$sim/home"
    travelling_files | tar --null -T - -cf - | tar -xf - -C "$sim/tree"
    # the check installs into its python3's environment: a hard-linked copy keeps the image bare
    rm -rf "$sim/image"
    cp -al "$venv" "$sim/image"
    echo "simulate: tree copied to $sim/tree, \$OUT is $sim/out, the image $sim/image"
    (
        cd "$sim/tree" &&
            env -u VIRTUAL_ENV -u PYTHONPATH PATH="$sim/image/bin:$PATH" HOME="$sim/home" \
                OUT="$sim/out" GPU_CHECK_SIMULATED=1 bash benchmarks/gpu_check.sh "$@"
    )
    rc=$?
    echo "simulate: exit $rc; \$OUT holds $(find "$sim/out" -type f | wc -l) files" \
        "(limit $MAX_OUT_FILES): $(cd "$sim/out" && find . -type f | sort | tr '\n' ' ')"
    cat "$sim/out/2_summary.txt"
    (($(find "$sim/out" -type f | wc -l) <= MAX_OUT_FILES)) || rc=1
    return $rc
}

case "${1:-}" in
--guard) guard; exit ;;
--simulate) shift; simulate "$@"; exit ;;
esac
for name in "$@"; do
    [[ -v BUDGET[$name] ]] || { echo "usage: $0 [--guard|--simulate] [STEP ...]" >&2; exit 2; }
done
# `bash benchmarks/gpu_check.sh peer fused`: ready, then only those steps (a rerun)
SELECTED=("$@")

# --- the check itself: on the GPU machine, or in --simulate's copy of the tree ---
SIMULATED=${GPU_CHECK_SIMULATED:-0}
OUT=${OUT:-$PWD/benchmarks/results/gpu_check}
mkdir -p "$OUT"
READY=$OUT/0_ready.json RESULTS=$OUT/1_results.jsonl SUMMARY=$OUT/2_summary.txt LOG=$OUT/3_check.log
: >"$RESULTS"
: >"$SUMMARY"
: >"$LOG"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export WANDB_MODE=disabled
# Mistral-7B-v0.1's tokenizer, carried as a file (benchmarks/gpu_wheels.sh)
export STORYGEN_MISTRAL_TOKENIZER=$PWD/.whl/mistral-7b-v0.1-tokenizer.model
if ((SIMULATED == 0)) && (($(df -k --output=avail /dev/shm | tail -1) > 40 * 1024 * 1024)); then
    WORK=$(mktemp -d /dev/shm/storygen-check.XXXX) # 7B in bf16 is 14.5 GB: RAM-backed is fastest
else
    WORK=$(mktemp -d /tmp/storygen-check.XXXX)
fi
trap 'rm -rf "$WORK"' EXIT
export PYTHONPATH=$WORK/site:$PWD
# the CPU is far slower than the GPU, even with tiny shapes: the simulation's limits are longer
SCALE=$((SIMULATED ? 6 : 1))
# step lengths (warm-up + timed steps): a few on the CPU, enough to time on the GPU
CPU=()
GPT2_STEPS=(--gpt2-steps 20 --warmup-steps 3)
QLORA_STEPS=(--steps 6 --warmup-steps 2)
if ((SIMULATED)); then
    CPU=(--cpu)
    GPT2_STEPS=(--gpt2-steps 2 --warmup-steps 1)
    QLORA_STEPS=(--steps 2 --warmup-steps 1)
fi
START=$(date +%s)
FAILED=()

# step NAME COMMAND...: run under the step's budget; log; summarize; a JSON line if it failed
step() {
    local name=$1 limit=$((BUDGET[$1] * SCALE)) began rc
    shift
    [[ $name == ready ]] || ((${#SELECTED[@]} == 0)) || [[ " ${SELECTED[*]} " == *" $name "* ]] ||
        return 0
    began=$(date +%s)
    echo "=== $name (limit ${limit}s) $*" >>"$LOG"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$WORK/$name.log" >>"$LOG"
    rc=${PIPESTATUS[0]}
    echo "$name rc=$rc $(($(date +%s) - began))s (limit ${limit}s)" | tee -a "$SUMMARY"
    if ((rc != 0)); then
        FAILED+=("$name")
        python3 - "$name" "$rc" "$(($(date +%s) - began))" "$WORK/$name.log" >>"$RESULTS" <<'PY'
import json, sys
name, rc, seconds, log = sys.argv[1:]
tail = open(log, errors="replace").read().splitlines()[-25:]
print(json.dumps({"step": name, "rc": int(rc), "seconds": int(seconds),
                  "timed_out": rc in ("124", "137"), "tail": tail}))
PY
    fi
    return "$rc"
}

# Into the image's own environment, so that every process finds them (tests start
# subprocesses with PYTHONPATH=<repo> alone); where that is not writable, into $WORK/site,
# which PYTHONPATH names.
ready() {
    local pip=(python3 -m pip install --no-index --no-deps --no-compile --no-cache-dir)
    if ! "${pip[@]}" .whl/*.whl >"$WORK/install.log" 2>&1 &&
        ! "${pip[@]}" --target "$WORK/site" .whl/*.whl >>"$WORK/install.log" 2>&1; then
        python3 - "$READY" "$WORK/install.log" <<'PY'
import json, sys
tail = open(sys.argv[2], errors="replace").read().splitlines()[-30:]
open(sys.argv[1], "w").write(json.dumps(
    {"ok": False, "error": "pip install of the carried .whl/ failed", "pip_tail": tail},
    indent=2) + "\n")
PY
        cat "$WORK/install.log"
        return 1
    fi
    cat "$WORK/install.log"
    python3 benchmarks/gpu_ready.py "$READY" $( ((SIMULATED)) && echo --cpu)
}

export -f ready
export WORK READY SIMULATED
if ! step ready bash -c ready; then
    if ! python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$READY" 2>/dev/null; then
        # it died before writing its file (a timeout, a crash): its output's end says why
        python3 - "$READY" "$WORK/ready.log" <<'PY' || tail -30 "$WORK/ready.log" >"$READY"
import json, sys
tail = open(sys.argv[2], errors="replace").read().splitlines()[-30:]
open(sys.argv[1], "w").write(json.dumps(
    {"ok": False, "error": "step 0 ended without its report", "tail": tail}, indent=2) + "\n")
PY
    fi
    echo "ready FAILED: the check ends here; the reason is in 0_ready.json" | tee -a "$SUMMARY"
    exit 1
fi
step gpt2 python3 benchmarks/gpu.py "${CPU[@]}" --runs gpt2 "${GPT2_STEPS[@]}" --jsonl "$RESULTS"
step qlora_7b python3 benchmarks/gpu_7b.py "${CPU[@]}" "${QLORA_STEPS[@]}" \
    --keep-init "$WORK/mistral_7b" --jsonl "$RESULTS"
step peer python3 benchmarks/gpu_peer.py "${CPU[@]}" "${QLORA_STEPS[@]}" \
    --init "$WORK/mistral_7b" --jsonl "$RESULTS"
rm -rf "$WORK/mistral_7b"
step fused python3 benchmarks/gpu_fused.py "${CPU[@]}" --jsonl "$RESULTS"
step train_eval python3 benchmarks/gpu_train_eval.py "${CPU[@]}" --work "$WORK/train_eval" \
    --jsonl "$RESULTS"
rm -rf "$WORK/train_eval"
# the tests whose outcome depends on CUDA: they skip (or take the CPU branch) without it
step cuda_tests python3 benchmarks/gpu_tests.py --jsonl "$RESULTS" --junit "$WORK/tests.xml" -- \
    tests/models/test_fused_loss.py tests/models/test_precision.py \
    tests/test_configs.py::test_an_entry_points_main_works_when_called_from_python
echo "total $(($(date +%s) - START))s; failed: ${FAILED[*]:-none}" | tee -a "$SUMMARY"
((${#FAILED[@]} == 0))
