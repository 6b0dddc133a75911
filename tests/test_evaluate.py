"""evaluate, generate and export end to end on one tiny trained run, as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from tests.conftest import TINY_RUN, compose_config, run_module

# the tests of this module's trained run stay in one test process, so it trains once
pytestmark = pytest.mark.xdist_group("evaluate_run")

# The tiny run with the default story cap (sized by the references), so the test stage's
# numbers include the cap that evaluate must derive the same way.
RUN = [
    *(o for o in TINY_RUN if not o.startswith("callbacks.story_metrics.generation.")),
    "callbacks.story_metrics.num_test_prompts=8",
    "callbacks.story_metrics.batch_size=4",  # two batches: one seeding across them
    "logger=csv",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """One real `python -m storygen.train` run (with its .hydra/config.yaml) for this module."""
    root = tmp_path_factory.mktemp("trained")
    run_dir = root / "run"
    result = run_module(
        "storygen.train", *RUN, f"hydra.run.dir={run_dir}", f"paths.root_dir={root}", cwd=root
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def evaluate(*args: str, cwd: Path) -> Path:
    result = run_module("storygen.evaluate", *args, f"paths.root_dir={cwd}", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    return next(cwd.glob("outputs/evaluate/*/*"))


def best_checkpoint(run_dir: Path) -> Path:
    (best,) = run_dir.glob("checkpoints/epoch_*.ckpt")
    return best


def assert_same_test_metrics(evaluated: dict, run_metrics: dict) -> None:
    """evaluate's metrics are the run's test/* metrics, up to the float32 the trainer logs in."""
    stage = {key.removeprefix("test/"): v for key, v in run_metrics.items() if "test/" in key}
    assert stage.keys() - {"ppl"} == evaluated.keys(), (stage.keys(), evaluated.keys())
    for name, value in evaluated.items():
        assert float(np.float32(value)) == stage[name], (name, value, stage[name])


def test_evaluate_agrees_with_the_runs_own_test_stage(trained_run, tmp_path):
    """Same checkpoint, prompts, cap, batch size and seed: the same loss and story metrics, up
    to the float32 the trainer logs in."""
    out_dir = evaluate(
        f"ckpt_path={best_checkpoint(trained_run)}", "num_prompts=8", "batch_size=4", cwd=tmp_path
    )
    metrics = json.loads((out_dir / "metrics.json").read_text())
    trained = json.loads((trained_run / "run.json").read_text())["metrics"]
    assert_same_test_metrics(metrics, trained)

    generated = [json.loads(line) for line in (out_dir / "generations.jsonl").open()]
    in_training = [json.loads(line) for line in (trained_run / "generations/test.jsonl").open()]
    assert len(generated) == 8
    assert [g["generation"] for g in generated] == [g["generation"] for g in in_training]
    # each story's own scores too, which compare's intervals resample
    assert [g["scores"] for g in generated] == [g["scores"] for g in in_training]
    assert {"rouge1", "len_mean", "eos_rate"} <= generated[0]["scores"].keys()
    assert any(g["generation"] for g in generated)
    # the share of stories the cap cut, as the trainer and evaluate log it
    cut = sum(not g["ended_with_eos"] for g in generated) / len(generated)
    assert metrics["gen_truncated"] == cut
    assert {"val/gen_truncated", "val/gen_cap"} <= trained.keys()
    assert (out_dir / "lengths.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_scores_in_the_precision_the_runs_test_stage_ran_in(
    trained_run, tmp_path, monkeypatch
):
    """A GPU run tests under bf16 autocast, and evaluate must score it so, not in fp32. bf16
    autocast on the CPU stands in for the GPU: the test stage runs in-process, past the check
    that keeps bf16 training off a CPU (scoring alone is quick)."""
    import storygen.train

    monkeypatch.setattr(storygen.train, "check_precision", lambda trainer: None)
    checkpoint = best_checkpoint(trained_run)
    test_only = [*RUN, "train=false", f"ckpt_path={checkpoint}", "trainer.precision=bf16-mixed"]
    in_bf16 = storygen.train.train(compose_config(test_only, tmp_path / "bf16"))
    in_fp32 = json.loads((trained_run / "run.json").read_text())["metrics"]
    assert in_bf16["test/loss"] != in_fp32["test/loss"]  # so the precision shows

    # the run's dir as a GPU run leaves it: trainer.precision=bf16-mixed in its saved config
    gpu_run = tmp_path / "gpu-run"
    shutil.copytree(trained_run, gpu_run)
    saved = OmegaConf.load(gpu_run / ".hydra" / "config.yaml")
    saved.trainer.precision = "bf16-mixed"
    OmegaConf.save(saved, gpu_run / ".hydra" / "config.yaml")
    ckpt = f"ckpt_path={gpu_run / 'checkpoints' / checkpoint.name}"
    # its own precision by default; another when asked for
    for name, args, expected in ("own", [], in_bf16), ("fp32", ["precision=32-true"], in_fp32):
        (tmp_path / name).mkdir()
        out_dir = evaluate(ckpt, "num_prompts=8", "batch_size=4", *args, cwd=tmp_path / name)
        assert_same_test_metrics(json.loads((out_dir / "metrics.json").read_text()), expected)


def test_a_data_override_merges_onto_the_runs_data(trained_run, tmp_path):
    """`data.max_eval_samples=5` keeps the run's bundled sample (evaluate.yaml's default data
    is the hub, unreachable here) and evaluates 5 test stories."""
    out_dir = evaluate(
        f"ckpt_path={trained_run}/checkpoints/last.ckpt",
        "data.max_eval_samples=5",
        "num_prompts=8",
        cwd=tmp_path,
    )
    assert len((out_dir / "generations.jsonl").read_text().splitlines()) == 5
    assert np.isfinite(json.loads((out_dir / "metrics.json").read_text())["loss"])


def test_data_or_experiment_on_the_command_line_replaces_the_runs_data(trained_run, tmp_path):
    from storygen.evaluate import data_config

    ckpt = f"ckpt_path={trained_run}/checkpoints/last.ckpt"
    merged = [ckpt, "data.max_eval_samples=5", "~data.cache_dir"]
    cfg = compose_config(merged, tmp_path, config_name="evaluate")
    data = data_config(cfg, merged)
    assert data.corpus.source == "sample" and data.max_length == 128  # the run's
    assert data.max_eval_samples == 5 and "cache_dir" not in data

    replaced = [ckpt, "data=writingprompts", "data.max_eval_samples=5"]
    cfg = compose_config(replaced, tmp_path, config_name="evaluate")
    data = data_config(cfg, replaced)
    assert data.corpus._target_.endswith("WritingPromptsCorpus") and data.max_eval_samples == 5


def test_the_loss_pass_builds_no_kv_cache(tmp_path):
    from storygen.evaluate import mean_loss

    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=50, n_positions=16, n_embd=8, n_layer=1, n_head=2)
    )
    caches = []
    model.register_forward_hook(lambda module, args, output: caches.append(output.past_key_values))
    ids = torch.arange(12).reshape(2, 6)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}
    assert np.isfinite(mean_loss(model, [batch, batch]))
    assert caches == [None, None]


def test_generate_prints_the_models_new_text(trained_run, tmp_path):
    """Greedy, so the printed story must be exactly the model's own continuation."""
    from storygen.models.generation import encode_prompts
    from storygen.models.trained import load_for_generation

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Once upon a time, a cat sat.\n\nThe dog ran.\n", encoding="utf-8")
    ckpt = f"{trained_run}/checkpoints/last.ckpt"
    result = run_module(
        "storygen.generate",
        f"ckpt_path={ckpt}",
        f"prompts_file={prompts}",
        "generation.max_new_tokens=8",
        "generation.do_sample=false",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _, first, second = result.stdout.split("--- story ")
    assert "--- story 3 ---" not in result.stdout

    backbone, tokenizer, _ = load_for_generation(
        ckpt, compose_config([], tmp_path, "generate").model
    )
    for printed, prompt in ((first, "Once upon a time, a cat sat."), (second, "The dog ran.")):
        encoded = encode_prompts(tokenizer, [prompt])
        output = backbone.generate(
            **encoded, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
        new_tokens = output[0, encoded["input_ids"].shape[1] :]
        new_text = tokenizer.decode(new_tokens, skip_special_tokens=True)
        assert new_text.strip(), "the model's greedy continuation is empty"
        assert f"{prompt}{new_text}" in printed, (printed, new_text)


def test_export_command_writes_a_model_plain_transformers_loads(trained_run, tmp_path):
    from storygen.models.trained import load_trained_model

    ckpt = f"{trained_run}/checkpoints/last.ckpt"
    result = run_module(
        "storygen.export", f"ckpt_path={ckpt}", f"out_dir={tmp_path / 'export'}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    exported = AutoModelForCausalLM.from_pretrained(tmp_path / "export" / "model").eval()
    trained = load_trained_model(ckpt, compose_config([], tmp_path, "export").model).backbone
    ids = torch.tensor([[50256, 7454, 2402, 257, 640, 11]])
    with torch.no_grad():
        assert torch.equal(exported(ids).logits, trained.eval()(ids).logits)


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
    from storygen.models.trained import load_for_generation

    build_offline_gpt2_tokenizer().save_pretrained(adapter)
    with pytest.raises(StorygenError, match="names no base model.*pass base_model="):
        load_for_generation(str(adapter), compose_config(TINY_RUN, tmp_path).model)
