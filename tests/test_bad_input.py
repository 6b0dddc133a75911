"""Bad input costs seconds: one clear line naming the value and the fix, a non-zero exit, no
traceback, and nothing already written is lost. Each case runs `python -m storygen.train`;
the table's cases run two at a time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from omegaconf import open_dict

from storygen.train import train
from tests.conftest import ROOT, TINY_RUN, compose_config

QUICK = [*TINY_RUN, "logger=csv", "callbacks.story_metrics.num_prompts=0"]


def run_main(tmp_path: Path, *overrides: str, env: dict | None = None) -> tuple[int, str]:
    """`python -m storygen.train` with these overrides: its exit status and its output."""
    run_dir = (
        []
        if any(o.startswith("hydra.run.dir=") for o in overrides)
        else [f"hydra.run.dir={tmp_path / 'run'}"]
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "storygen.train",
            *QUICK,
            *overrides,
            f"paths.root_dir={tmp_path}",
            *run_dir,
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    return result.returncode, result.stderr + result.stdout


def write_wp_dir(directory: Path, prompts: list[str], stories: list[str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid", "test"):
        (directory / f"{split}.wp_source").write_text("\n".join(prompts) + "\n")
        (directory / f"{split}.wp_target").write_text("\n".join(stories) + "\n")
    return directory


def tinystories_files(tmp_path: Path, content: bytes, name: str = "train.txt") -> list[str]:
    path = tmp_path / name
    path.write_bytes(content)
    return [
        "data.corpus.source=files",
        f"data.corpus.train_file={path}",
        f"data.corpus.validation_file={path}",
    ]


CASES = {
    "missing-data-file": (
        lambda tmp: [
            "data.corpus.source=files",
            "data.corpus.train_file=/no/such/train.txt",
            "data.corpus.validation_file=/no/such/valid.txt",
        ],
        "error: data file /no/such/train.txt does not exist",
    ),
    "missing-data-dir": (
        lambda tmp: [
            "data=writingprompts",
            "data.corpus.source=files",
            "data.corpus.data_dir=/no/such/dir",
        ],
        "error: data.corpus.data_dir='/no/such/dir' is not a directory",
    ),
    "source-target-count-mismatch": (
        lambda tmp: [
            "data=writingprompts",
            "data.corpus.source=files",
            "data.corpus.data_dir="
            + str(write_wp_dir(tmp / "wp", ["[ WP ] A", "[ WP ] B"], ["One story ."])),
        ],
        "has 2 lines but",
    ),
    "blank-stories": (
        lambda tmp: tinystories_files(tmp, b"  \n<|endoftext|>\n\t\n<|endoftext|>\n"),
        "error: the train split has no stories",
    ),
    "non-utf8-bytes": (
        lambda tmp: tinystories_files(tmp, b"caf\xe9 story\n<|endoftext|>\nmore\n"),
        "is not UTF-8 text",
    ),
    "prompt-longer-than-max-length": (
        lambda tmp: [
            "data=writingprompts",
            "data.corpus.source=sample",
            "data.max_length=8",
        ],
        "error: every prompt of the train split fills data.max_length",
    ),
    "empty-after-filtering": (
        lambda tmp: ["data.max_train_samples=0"],
        "error: the train split has no stories",
    ),
    "unknown-config-option": (lambda tmp: ["model=nope"], "Could not find 'model/nope'"),
    "mistyped-config-key": (
        lambda tmp: ["model=mistral_tiny_lora", "model.backbone.lora.rankk=8"],
        "Key 'rankk' is not in struct",
    ),
    "4bit-without-lora": (
        lambda tmp: ["model=mistral_tiny_lora", "model.backbone.lora=null"],
        "error: 4-bit quantized weights cannot be trained",
    ),
    "bf16-on-cpu": (
        lambda tmp: ["trainer.precision=bf16-mixed"],
        "error: trainer.precision=bf16-mixed on a CPU",
    ),
    "packing-without-isolation": (
        lambda tmp: [
            "model.backbone.architecture._target_=transformers.BloomConfig",
            "model.backbone.attn_implementation=eager",
            "data.packing=true",
        ],
        "error: data.packing=true, but BloomForCausalLM",
    ),
}


@pytest.fixture(scope="module")
def bad_input_results(tmp_path_factory) -> dict[str, tuple[int, str]]:
    root = tmp_path_factory.mktemp("bad-input")

    def run_case(case: str) -> tuple[str, tuple[int, str]]:
        (root / case).mkdir()
        return case, run_main(root / case, *CASES[case][0](root / case))

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run_case, sorted(CASES)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_clear_line_and_a_nonzero_exit(case, bad_input_results):
    code, output = bad_input_results[case]
    assert code != 0
    assert CASES[case][1] in output, output[-3000:]
    assert "Traceback" not in output


@pytest.fixture(scope="module")
def gpt2_tiny_checkpoint(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("trained")
    cfg = compose_config(QUICK, run_dir)
    with open_dict(cfg):
        cfg.test = cfg.export = False
    train(cfg)
    return run_dir / "checkpoints" / "last.ckpt"


def test_a_checkpoint_of_another_model_config_is_refused(gpt2_tiny_checkpoint, tmp_path):
    code, stderr = run_main(
        tmp_path,
        "model.backbone.architecture.n_embd=128",
        "train=false",
        f"ckpt_path={gpt2_tiny_checkpoint}",
    )
    assert code == 2 and "error: the checkpoint does not fit this model" in stderr
    assert "Traceback" not in stderr


def test_a_failed_retry_in_a_run_dir_keeps_everything_already_there(gpt2_tiny_checkpoint):
    run_dir = gpt2_tiny_checkpoint.parent.parent
    before = {
        p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and ".hydra" not in p.parts
    }
    code, _ = run_main(
        run_dir,
        f"hydra.run.dir={run_dir}",
        "ckpt_path=last",
        "data.max_train_samples=0",
    )
    assert code == 2
    for path, content in before.items():
        kept = path if path.name != "run.json" else path.with_name("run.1.json")
        assert kept.read_bytes() == content, path
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_wandb_with_a_key_but_no_network_logs_offline_and_says_so(tmp_path):
    code, output = run_main(
        tmp_path,
        "logger=wandb",
        "test=false",
        env={
            "WANDB_API_KEY": "0123456789abcdef0123456789abcdef01234567",
            "WANDB_MODE": "",
            "WANDB_BASE_URL": "http://127.0.0.1:9",  # nothing listens on port 9
        },
    )
    assert code == 0, output[-3000:]
    assert "W&B: http://127.0.0.1:9 cannot be reached; logging offline" in output
    assert len(list((tmp_path / "run").glob("wandb/offline-run-*/run-*.wandb"))) == 1
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "completed"
