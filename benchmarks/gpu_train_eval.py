"""`python -m storygen.train` end to end on a GPU, then `python -m storygen.evaluate` on its best
checkpoint, compared with the run's own test stage (both under the run's bf16-mixed).

    python benchmarks/gpu_train_eval.py --work DIR --jsonl $OUT/1_results.jsonl  # gpu_check.sh
    python benchmarks/gpu_train_eval.py --cpu --work DIR --jsonl PATH   # tiny, fp32, on a CPU

The run is `model=mistral_lora trainer=gpu` on a local random-init Mistral of the real width
(4096, 14336, 32/8 heads, vocab 32000) with 2 layers and Mistral-7B's own tokenizer, chosen by
config overrides alone (benchmarks/mistral_init.py): nf4 + LoRA, paged 8-bit AdamW, 6 steps of
8 x 256 on the bundled TinyStories sample with validation (loss and stories) every 3, an
adapter-only checkpoint, the test stage on 8 stories from the best checkpoint, export;
`logger=csv`, so W&B is never imported. Then evaluate, with the test stage's prompt count and
batch size and its default story cap, in the precision the run saved. As
tests/test_evaluate.py compares them: every evaluate metric equals the run's `test/` metric up
to the float32 the trainer logs in. One JSON line: each command's exit code and seconds, the
run's status, both sets of metrics and the ones that differ. The commands' exit codes set this
script's; a difference is a finding, reported, not a failure of the step.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
TINY = ["hidden_size=64", "intermediate_size=128", "num_attention_heads=4", "num_key_value_heads=2"]


def run(command: list[str], log: list[str]) -> tuple[int, float]:
    started = time.perf_counter()
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(result.stdout, flush=True)
    log.extend(result.stdout.splitlines()[-15:] if result.returncode else [])
    return result.returncode, round(time.perf_counter() - started, 1)


def compare(evaluated: dict, run_metrics: dict) -> dict:
    stage = {key.removeprefix("test/"): v for key, v in run_metrics.items() if "test/" in key}
    differing = {
        name: [value, stage.get(name)]
        for name, value in evaluated.items()
        if stage.get(name) != float(np.float32(value))
    }
    return {
        "same_metric_names": stage.keys() - {"ppl"} == evaluated.keys(),
        "differing": differing,
        "equal": not differing and stage.keys() - {"ppl"} == evaluated.keys(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--jsonl", required=True)
    args = parser.parse_args()
    work = args.work
    init, run_dir, eval_dir = work / "mistral", work / "run", work / "evaluate"
    python = sys.executable
    tail: list[str] = []
    line: dict = {"step": "train_eval", "device": "cpu" if args.cpu else "cuda"}

    where = ["--device", "cpu", "--dtype", "float32", *TINY] if args.cpu else []
    line["init_rc"], line["init_s"] = run(
        [python, str(BENCHMARKS / "mistral_init.py"), str(init), "--layers", "2", *where], tail
    )
    if args.cpu:  # no CUDA: fp32 compute, torch's AdamW (paged 8-bit AdamW needs CUDA)
        device = [
            "trainer=cpu",
            "model.optimizer._target_=torch.optim.AdamW",
            "model.backbone.quantization.bnb_4bit_compute_dtype=float32",
            "data.batch_size=2",
            "data.max_length=128",
            "data.max_train_samples=12",
            "data.num_workers=0",
        ]
    else:
        device = [
            "trainer=gpu",
            "data.batch_size=8",
            "data.max_length=256",  # shorter stories to generate: this step checks, not times
            "data.max_train_samples=48",
            "data.num_workers=2",
        ]
    train = [
        "model=mistral_lora",
        f"model.backbone.name_or_path={init}",
        f"model.tokenizer.name_or_path={init}",
        *device,
        "data=tinystories",
        "data.corpus.source=sample",
        "data.max_eval_samples=8",
        "trainer.max_steps=6",
        "trainer.val_check_interval=3",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "callbacks.story_metrics.num_prompts=4",
        "callbacks.story_metrics.num_test_prompts=8",
        "callbacks.story_metrics.batch_size=4",
        "logger=csv",
        f"paths.root_dir={work}",
        f"hydra.run.dir={run_dir}",
    ]
    if line["init_rc"] == 0:
        line["train_rc"], line["train_s"] = run([python, "-m", "storygen.train", *train], tail)
    record = run_dir / "run.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        line["run_status"] = saved.get("status")
        line["run_metrics"] = saved.get("metrics", {})
    best = sorted(run_dir.glob("checkpoints/epoch_*.ckpt"))
    if line.get("train_rc") == 0 and best:
        line["checkpoint"] = best[-1].name
        evaluate = [
            f"ckpt_path={best[-1]}",
            "num_prompts=8",
            "batch_size=4",
            f"paths.root_dir={work}",
            f"hydra.run.dir={eval_dir}",
        ]
        line["evaluate_rc"], line["evaluate_s"] = run(
            [python, "-m", "storygen.evaluate", *evaluate], tail
        )
        metrics = eval_dir / "metrics.json"
        if metrics.is_file():
            line["evaluate_metrics"] = json.loads(metrics.read_text())
            line |= compare(line["evaluate_metrics"], line.get("run_metrics", {}))
    if tail:
        line["tail"] = tail
    with open(args.jsonl, "a") as out:
        out.write(json.dumps(line) + "\n")
    print(json.dumps({k: v for k, v in line.items() if k not in ("run_metrics", "tail")}))
    codes = [line.get(key) for key in ("init_rc", "train_rc", "evaluate_rc")]
    sys.exit(0 if codes == [0, 0, 0] else 1)


if __name__ == "__main__":
    main()
