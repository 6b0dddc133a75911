"""Bad input costs seconds: one `error:` line naming the value and the fix, exit status 2 for
storygen's own errors (1 for Hydra's config errors), no traceback, and nothing already written
is lost. Most cases run the entry points' own code in-process, under the same handler
(`exit_on_user_error`) the commands use; a few run the commands for the exit-code contract.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import storygen.evaluate
import storygen.generate
import storygen.train
from storygen.compare.__main__ import main as compare_main
from storygen.models.module import StoryLM
from tests.conftest import TINY_RUN, TrainedRun, compose_config, run_module

QUICK = [*TINY_RUN, "logger=csv", "callbacks.story_metrics.num_prompts=0"]


def run_main(tmp_path: Path, *overrides: str, env: dict | None = None) -> tuple[int, str]:
    """`python -m storygen.train` with these overrides: its exit status and its stderr."""
    result = run_module(
        "storygen.train",
        *QUICK,
        *overrides,
        f"paths.root_dir={tmp_path}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
        env=env,
    )
    return result.returncode, result.stderr


def run_entry(
    entry, overrides: list[str], output_dir: Path, capsys, config_name: str = "train"
) -> tuple[int, str]:
    """An entry point's body (`main` under Hydra's decorator) on a composed config, in-process:
    the exit status its error handler gives, and what it printed to stderr."""
    cfg = compose_config(overrides, output_dir, config_name=config_name)
    with pytest.raises(SystemExit) as exited:
        entry.main.__wrapped__(cfg)
    return exited.value.code, capsys.readouterr().err


def assert_one_error_line(output: str, expected: str) -> None:
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], output[-3000:]
    assert "Traceback" not in output


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
    "unknown-tokenize-train": (
        lambda tmp: ["data.tokenize_train=lazily"],
        "error: data.tokenize_train='lazily' is not known; use one of ahead, as_loaded",
    ),
    "as-loaded-packing": (
        lambda tmp: ["data.tokenize_train=as_loaded", "data.packing=true"],
        "error: data.tokenize_train=as_loaded cannot serve data.packing=true",
    ),
    "template-without-prompt": (
        lambda tmp: ["data.prompt_template=Story:"],
        "error: data.prompt_template='Story:' has no `{prompt}` placeholder",
    ),
    "unknown-corpus-source": (
        lambda tmp: ["data.corpus.source=ftp"],
        "error: data.corpus.source='ftp' is not known; use one of",
    ),
    "files-without-train-file": (
        lambda tmp: ["data.corpus.source=files"],
        "error: data.corpus.source=files needs data.corpus.train_file",
    ),
    "test-size-out-of-range": (
        lambda tmp: ["data.corpus.test_size=1.5"],
        "error: data.corpus.test_size=1.5 must be in (0, 1).",
    ),
    "prompt-sentences-out-of-range": (
        lambda tmp: ["data.corpus.prompt_sentences=0"],
        "error: data.corpus.prompt_sentences=0 must be at least 1.",
    ),
    # issue 29: checked against the epoch's 6 batches once the data is read, before the model
    "val-check-interval-above-the-epoch": (
        lambda tmp: ["trainer.val_check_interval=7"],
        "error: trainer.val_check_interval=7 is more batches than an epoch has (6); set "
        "trainer.val_check_interval to at most 6, or to a fraction of the epoch",
    ),
    "limit-train-batches-leaves-none": (
        lambda tmp: ["+trainer.limit_train_batches=0.1"],
        "error: trainer.limit_train_batches=0.1 leaves none of the epoch's 6 batches",
    ),
}

# Issue 13 item 10: refused before anything is built, so the run dir holds only run.json.
REFUSED_AT_ONCE = {
    "batch-size-zero": (["data.batch_size=0"], "error: data.batch_size=0 must be a whole number"),
    "learning-rate-not-a-number": (
        ["model.optimizer.lr=abc"],
        "error: model.optimizer.lr='abc' is not a number; set model.optimizer.lr=<number>",
    ),
    "missing-checkpoint": (
        ["ckpt_path=/no/such/last.ckpt"],
        "error: ckpt_path=/no/such/last.ckpt does not exist; pass a checkpoint file",
    ),
    "zero-epochs": (
        ["trainer.max_epochs=0"],
        "error: trainer.max_epochs=0 trains no step, so the run would test and export untrained",
    ),
    "zero-steps": (["trainer.max_steps=0"], "error: trainer.max_steps=0 trains no step"),
    # issue 29: every count, size, interval and rate, from one table (run/checks.py)
    "max-length-not-a-number": (
        ["data.max_length=long"],
        "error: data.max_length='long' must be at least 2 tokens, a whole number (e.g. 512).",
    ),
    "eval-batch-size-zero": (
        ["data.eval_batch_size=0"],
        "error: data.eval_batch_size=0 must be a whole number of at least 1 (or null)",
    ),
    "negative-workers": (["data.num_workers=-1"], "error: data.num_workers=-1 must be a whole"),
    "zero-processes": (["data.num_proc=0"], "error: data.num_proc=0 must be a whole number"),
    "negative-eval-samples": (
        ["data.max_eval_samples=-5"],
        "error: data.max_eval_samples=-5 must be a whole number of at least 0",
    ),
    "fractional-epochs": (
        ["trainer.max_epochs=1.5"],
        "error: trainer.max_epochs=1.5 must be a whole number of at least -1",
    ),
    "accumulation-zero": (
        ["trainer.accumulate_grad_batches=0"],
        "error: trainer.accumulate_grad_batches=0 must be a whole number of at least 1; set "
        "e.g. trainer.accumulate_grad_batches=4.",
    ),
    "val-check-interval-zero": (
        ["trainer.val_check_interval=0"],
        "error: trainer.val_check_interval=0 must be a whole number of batches (at least 1) or "
        "a fraction of the epoch in (0, 1.0]",
    ),
    "limit-val-batches-above-one": (
        ["+trainer.limit_val_batches=1.5"],
        "error: trainer.limit_val_batches=1.5 must be a whole number of batches",
    ),
    "negative-learning-rate": (
        ["model.optimizer.lr=-0.001"],
        "error: model.optimizer.lr=-0.001 must be a number above 0",
    ),
    "negative-warmup": (
        ["model.scheduler.num_warmup_steps=-5"],
        "error: model.scheduler.num_warmup_steps=-5 must be a whole number of at least 0",
    ),
    "negative-prompts": (
        ["callbacks.story_metrics.num_prompts=-1"],
        "error: callbacks.story_metrics.num_prompts=-1 must be a whole number of at least 0",
    ),
    "zero-new-tokens": (
        ["callbacks.story_metrics.generation.max_new_tokens=0"],
        "error: callbacks.story_metrics.generation.max_new_tokens=0 must be a whole number of "
        "at least 1 (or null)",
    ),
    "top-p-above-one": (
        ["callbacks.story_metrics.generation.top_p=1.5"],
        "error: callbacks.story_metrics.generation.top_p=1.5 must be a number above 0 and at "
        "most 1",
    ),
    "lora-rank-zero": (
        ["model=mistral_tiny_lora", "model.backbone.lora.r=0"],
        "error: model.backbone.lora.r=0 must be a whole number of at least 1",
    ),
    "unknown-test-ckpt": (
        ["test_ckpt=final"],
        "error: test_ckpt='final' is not known; use test_ckpt=best",
    ),
    "best-of-another-metric": (
        ["optimized_metric=val/rouge1"],
        "error: test_ckpt=best tests the checkpoint of the best val/loss",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_error_line_and_exit_2(case, tmp_path, capsys):
    overrides = CASES[case][0](tmp_path)
    code, stderr = run_entry(storygen.train, [*QUICK, *overrides], tmp_path / "run", capsys)
    assert code == 2
    assert_one_error_line(stderr, CASES[case][1])


@pytest.mark.parametrize("case", sorted(REFUSED_AT_ONCE))
def test_a_bad_setting_is_refused_before_anything_is_written(case, tmp_path, capsys):
    overrides, expected = REFUSED_AT_ONCE[case]
    code, stderr = run_entry(storygen.train, [*QUICK, *overrides], tmp_path, capsys)
    assert code == 2
    assert_one_error_line(stderr, expected)
    written = [p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()]
    assert written == [Path("run.json")]
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"


def test_a_file_that_is_not_a_checkpoint_is_refused_and_the_run_dir_kept(
    trained_run_copy: TrainedRun, capsys
):
    run_dir = trained_run_copy.output_dir
    not_a_checkpoint = run_dir / "notes.ckpt"
    not_a_checkpoint.write_text("weights are in last.ckpt\n")
    plain_state_dict = run_dir / "weights.pt"  # a torch file, but not a Lightning checkpoint
    torch.save({"weight": torch.zeros(2)}, plain_state_dict)
    before = files_of(run_dir)
    for path in (not_a_checkpoint, plain_state_dict):
        code, stderr = run_entry(storygen.train, [*QUICK, f"ckpt_path={path}"], run_dir, capsys)
        assert code == 2
        assert_one_error_line(stderr, f"error: ckpt_path={path} is not a Lightning checkpoint")
    assert_kept(run_dir, before)


def test_a_checkpoint_of_another_model_config_is_refused(trained_run: TrainedRun, tmp_path, capsys):
    code, stderr = run_entry(
        storygen.train,
        [
            *QUICK,
            "model.backbone.architecture.n_embd=128",
            "train=false",
            f"ckpt_path={trained_run.last_checkpoint}",
        ],
        tmp_path,
        capsys,
    )
    assert code == 2
    assert_one_error_line(stderr, "error: the checkpoint does not fit this model")


def files_of(run_dir: Path) -> dict[Path, bytes]:
    return {
        p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file() and ".hydra" not in p.parts
    }


def assert_kept(run_dir: Path, before: dict[Path, bytes]) -> None:
    """Every file is unchanged; run.json, which records each attempt, moved to run.N.json."""
    for path, content in before.items():
        kept = path if path.name != "run.json" else path.with_name("run.1.json")
        assert kept.read_bytes() == content, path


def test_a_failed_retry_in_a_run_dir_keeps_everything_already_there(
    trained_run_copy: TrainedRun, capsys
):
    run_dir = trained_run_copy.output_dir
    before = files_of(run_dir)
    code, stderr = run_entry(
        storygen.train,
        [*QUICK, "ckpt_path=last", "data.max_train_samples=0"],
        run_dir,
        capsys,
    )
    assert code == 2
    assert_one_error_line(stderr, "error: the train split has no stories")
    assert_kept(run_dir, before)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def test_evaluate_with_an_unknown_split(trained_run: TrainedRun, tmp_path, capsys):
    code, stderr = run_entry(
        storygen.evaluate,
        [f"ckpt_path={trained_run.last_checkpoint}", "split=bogus"],
        tmp_path,
        capsys,
        config_name="evaluate",
    )
    assert code == 2
    assert_one_error_line(stderr, "error: split='bogus' is not known; use split=validation")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("entry", "args"),
    [("evaluate", []), ("generate", ["prompt=Once"])],
    ids=["evaluate", "generate"],
)
def test_an_unknown_precision_is_refused_before_the_model_loads(
    entry, args, trained_run: TrainedRun, tmp_path, capsys
):
    code, stderr = run_entry(
        getattr(storygen, entry),
        [f"ckpt_path={trained_run.last_checkpoint}", "precision=fp8", *args],
        tmp_path,
        capsys,
        config_name=entry,
    )
    assert code == 2
    assert_one_error_line(stderr, "error: precision=fp8 is not known; use 32-true, bf16-mixed")


@pytest.mark.parametrize("content", [None, "\n  \n\t\n"], ids=["missing", "blank"])
def test_generate_with_a_missing_or_blank_prompts_file(
    content, trained_run: TrainedRun, tmp_path, capsys
):
    prompts = tmp_path / "prompts.txt"
    if content is not None:
        prompts.write_text(content)
    code, stderr = run_entry(
        storygen.generate,
        [f"ckpt_path={trained_run.last_checkpoint}", f"prompts_file={prompts}"],
        tmp_path,
        capsys,
        config_name="generate",
    )
    assert code == 2
    expected = "does not exist." if content is None else "holds no prompts; write one per line."
    assert_one_error_line(stderr, f"error: prompts_file {prompts} {expected}")


def test_compare_with_a_corrupt_run_json(tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "run.json").write_text('{"status": "completed", "metrics": {')
    with pytest.raises(SystemExit) as exited:
        compare_main([str(run_dir), "--out", str(tmp_path / "report")])
    assert exited.value.code == 2
    assert_one_error_line(
        capsys.readouterr().err, f"error: {run_dir / 'run.json'} is not valid JSON"
    )
    assert not (tmp_path / "report").exists()


# The commands themselves: Hydra's config errors exit 1 with Hydra's message, storygen's 2.
@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        (["model=nope"], 1, "Could not find 'model/nope'"),
        (
            ["model=mistral_tiny_lora", "model.backbone.lora.rankk=8"],
            1,
            "Key 'rankk' is not in struct",
        ),
        (["data.batch_size=0"], 2, "error: data.batch_size=0 must be a whole number of at least 1"),
    ],
    ids=["unknown-option", "mistyped-key", "storygen-error"],
)
def test_the_command_exits_1_for_hydra_errors_and_2_for_storygen_errors(
    overrides, code, message, tmp_path
):
    returned, stderr = run_main(tmp_path, *overrides)
    assert returned == code, stderr[-3000:]
    assert message in stderr and "Traceback" not in stderr
    if code == 2:
        assert_one_error_line(stderr, message)


def test_wandb_with_a_key_but_no_network_logs_offline_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("WANDB_API_KEY", "0123456789abcdef0123456789abcdef01234567")
    monkeypatch.setenv("WANDB_MODE", "")
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    cfg = compose_config([*QUICK, "logger=wandb", "test=false"], tmp_path)
    storygen.train.train(cfg)
    assert "W&B: http://127.0.0.1:9 cannot be reached; logging offline" in caplog.text
    assert len(list(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))) == 1
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "completed"


def run_dir_with_config(trained_run: TrainedRun, tmp_path: Path) -> Path:
    """A run dir as `python -m storygen.train` leaves it: the checkpoint and .hydra/config.yaml."""
    run_dir = tmp_path / "saved-run"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_run.last_checkpoint, run_dir / "checkpoints" / "last.ckpt")
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(trained_run.config, run_dir / ".hydra" / "config.yaml")
    return run_dir / "checkpoints" / "last.ckpt"


# issue 29: what evaluate cannot honour, refused before a model loads (the shared trained run
# has no .hydra/config.yaml: its checkpoint stands for one copied out of its run dir)
EVALUATE_REFUSALS = {
    "model-of-a-run-with-a-config": (
        True,
        ["model=gpt2_tiny"],
        "error: model=... cannot apply: {ckpt} is rebuilt with the model its run trained",
    ),
    "model-key-of-a-run-with-a-config": (
        True,
        ["model.backbone.attn_implementation=eager"],
        "error: model=... cannot apply",
    ),
    "run-without-its-config": (
        False,
        [],
        "error: {ckpt} has no run config beside it",
    ),
    "no-prompts": (True, ["num_prompts=0"], "error: num_prompts=0 must be a whole number"),
    "zero-temperature": (
        True,
        ["generation.temperature=0"],
        "error: generation.temperature=0 must be a number above 0",
    ),
}


@pytest.mark.parametrize("case", sorted(EVALUATE_REFUSALS))
def test_evaluate_refuses_what_it_cannot_honour_before_a_model_loads(
    case, trained_run: TrainedRun, tmp_path, capsys, monkeypatch
):
    saved_config, overrides, expected = EVALUATE_REFUSALS[case]
    ckpt = (
        run_dir_with_config(trained_run, tmp_path) if saved_config else trained_run.last_checkpoint
    )
    monkeypatch.setattr(StoryLM, "__init__", refuse_to_build)
    code, stderr = run_entry(
        storygen.evaluate,
        [f"ckpt_path={ckpt}", *overrides],
        tmp_path / "eval",
        capsys,
        config_name="evaluate",
    )
    assert code == 2
    assert_one_error_line(stderr, expected.format(ckpt=ckpt))


def refuse_to_build(*args, **kwargs):
    raise AssertionError("a model was built before the bad setting was refused")


def test_generate_refuses_a_model_override_and_a_bad_sampling_setting(
    trained_run: TrainedRun, tmp_path, capsys, monkeypatch
):
    ckpt = run_dir_with_config(trained_run, tmp_path)
    monkeypatch.setattr(StoryLM, "__init__", refuse_to_build)
    for overrides, expected in [
        (["model=gpt2_tiny"], "error: model=... cannot apply"),
        (["generation.top_k=-1"], "error: generation.top_k=-1 must be a whole number of at"),
    ]:
        code, stderr = run_entry(
            storygen.generate,
            [f"ckpt_path={ckpt}", "prompt=Once", *overrides],
            tmp_path,
            capsys,
            config_name="generate",
        )
        assert code == 2
        assert_one_error_line(stderr, expected)
