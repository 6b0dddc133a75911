"""evaluate and generate end to end on a tiny trained checkpoint, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from storygen.train import train
from tests.conftest import ROOT, TINY_RUN, compose_config


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config([*TINY_RUN, "logger=csv"], run_dir)
    train(cfg)
    # what Hydra writes next to every real run, and what evaluate reads back
    (run_dir / ".hydra").mkdir()
    from omegaconf import OmegaConf

    (run_dir / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    return run_dir


def run_module(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_evaluate_writes_metrics_generations_and_a_length_plot(trained_run, tmp_path):
    result = run_module(
        "storygen.evaluate",
        f"ckpt_path={trained_run}/checkpoints/last.ckpt",
        "num_prompts=6",
        "generation.max_new_tokens=16",
        f"paths.root_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out_dir = next(tmp_path.glob("outputs/evaluate/*/*"))
    metrics = json.loads((out_dir / "metrics.json").read_text())
    for key in (
        "rouge1",
        "rouge2",
        "rougeL",
        "rougeLsum",
        "len_mean",
        "ref_len_median",
        "len_wasserstein",
        "distinct1",
        "distinct2",
        "repetition3",
        "eos_rate",
        "loss",
    ):
        assert key in metrics
    assert 0.0 <= metrics["rouge1"] <= 1.0 and metrics["loss"] > 0
    lines = (out_dir / "generations.jsonl").read_text().splitlines()
    assert len(lines) == 6 and {"prompt", "reference", "generation"} <= json.loads(lines[0]).keys()
    assert (out_dir / "lengths.png").read_bytes()[:4] == b"\x89PNG"


def test_generate_streams_a_story_from_a_prompt_and_a_file(trained_run, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Once upon a time, a cat sat.\n\nThe dog ran.\n", encoding="utf-8")
    ckpt = f"ckpt_path={trained_run}/checkpoints/last.ckpt"
    result = run_module(
        "storygen.generate",
        ckpt,
        f"prompts_file={prompts}",
        "generation.max_new_tokens=8",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--- story 1 ---\nOnce upon a time, a cat sat." in result.stdout
    assert "--- story 2 ---\nThe dog ran." in result.stdout
    assert "--- story 3 ---" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ckpt_path=/no/such.ckpt", "prompt=Hi"], "checkpoint /no/such.ckpt does not exist"),
        (["prompt=' '"], "the prompt is empty"),
        (["prompts_file=BAD"], "is not UTF-8 text"),
    ],
    ids=["missing-checkpoint", "empty-prompt", "non-utf8-prompts"],
)
def test_generate_bad_input_gives_one_clear_line(trained_run, tmp_path, args, message):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xe9\n")
    args = [a.replace("BAD", str(bad)) for a in args]
    if not any(a.startswith("ckpt_path") for a in args):
        args.append(f"ckpt_path={trained_run}/checkpoints/last.ckpt")
    result = run_module("storygen.generate", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_an_adapter_dir_without_its_base_is_refused(tmp_path):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": None}))
    from storygen.errors import StorygenError
    from storygen.models.loader import build_offline_gpt2_tokenizer
    from storygen.runs import load_for_generation

    build_offline_gpt2_tokenizer().save_pretrained(adapter)
    with pytest.raises(StorygenError, match="names no base model.*pass base_model="):
        load_for_generation(str(adapter), compose_config(TINY_RUN, tmp_path).model)
