"""The published study reproduced in one command (`-m experiment=reproduction`), its report
(`compare --reproduction`), and the ROUGE conventions that keep its columns honest.

The slow test runs the real command at toy scale (`reproduction=tiny`: three tiny runs, a few steps,
offline) and checks what it logged against the reference packages and the report's cells
against the runs' own files.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from storygen.compare.__main__ import main as compare_main
from storygen.compare.reproduction import load_published, reproduction_markdown
from storygen.compare.sources import ComparedRun, read_local_runs
from storygen.errors import exit_on_user_error
from storygen.inspect import report
from storygen.metrics.lengths import length_distance, word_counts
from storygen.metrics.rouge import ROUGE_TYPES
from storygen.metrics.story import score_stories
from storygen.train import train
from tests.conftest import TINY_RUN, compose_config, run_module
from tests.metrics.test_rouge import evaluate_rouge
from tests.test_compare import RUNS, write_sweep
from tests.wandb_records import wandb_records

# the tests of the module's tiny study run in one test process, so it runs once
pytestmark = pytest.mark.xdist_group("tiny_reproduction")

REPRODUCTION_RUNS = ("gpt2_writingprompts", "mistral_tinystories", "mistral_writingprompts")


# --- the study's configuration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("run", "tags"),
    [
        (
            "gpt2_writingprompts",
            "reproduction gpt2 full writingprompts model:gpt2 data:writingprompts",
        ),
        (
            "mistral_tinystories",
            "reproduction mistral qlora tinystories model:mistral_lora data:tinystories",
        ),
        (
            "mistral_writingprompts",
            "reproduction mistral qlora writingprompts model:mistral_lora data:writingprompts",
        ),
    ],
)
def test_each_reproduction_run_keeps_its_presets_tags_with_its_model_and_data(
    run: str, tags: str, tmp_path: Path
) -> None:
    cfg = compose_config(["experiment=reproduction", f"reproduction_run={run}"], tmp_path)
    assert OmegaConf.to_container(cfg.logger.wandb, resolve=True)["tags"] == tags.split()


@pytest.mark.parametrize("run", REPRODUCTION_RUNS)
def test_each_reproduction_run_composes_the_studys_settings(run: str, tmp_path: Path) -> None:
    cfg = compose_config(["experiment=reproduction", f"reproduction_run={run}"], tmp_path)
    backbone = cfg.model.backbone
    assert cfg.task_name == "reproduction" and cfg.seed == 3407
    assert set(cfg.rouge) == {"storygen", "hf"}
    assert cfg.hydra.sweeper.params.reproduction_run == ",".join(REPRODUCTION_RUNS)
    assert cfg.data.corpus._target_.endswith(
        "WritingPromptsCorpus" if run.endswith("writingprompts") else "TinyStoriesCorpus"
    )
    assert cfg.data.max_train_samples == cfg.reproduction.train_samples
    assert cfg.data.corpus.source == "hub"  # reproduction.writingprompts_source=files: the archive
    if run.startswith("gpt2"):
        assert backbone.name_or_path == "openai-community/gpt2" and "lora" not in backbone
        assert cfg.trainer.max_epochs == 3
        return
    assert backbone.name_or_path == "mistralai/Mistral-7B-v0.1"
    assert backbone.quantization.bnb_4bit_quant_type == "nf4"
    assert backbone.quantization.bnb_4bit_use_double_quant
    assert (backbone.lora.r, backbone.lora.lora_alpha, backbone.lora.lora_dropout) == (16, 16, 0)
    assert cfg.trainer.max_epochs == 1 and cfg.trainer.accumulate_grad_batches == 4
    assert cfg.data.batch_size == 2
    assert cfg.model.optimizer.lr == 2e-4 and cfg.model.scheduler.num_warmup_steps == 5


@pytest.mark.parametrize("run", REPRODUCTION_RUNS)
def test_published_parameter_counts_are_what_inspect_counts_for_the_reproduction_run(
    run: str, tmp_path: Path
) -> None:
    """The data file's counts against storygen's own offline count of each study run's model."""
    (row,) = [row for row in load_published().rows if row.run == run]
    cfg = compose_config(
        ["experiment=reproduction", f"reproduction_run={run}"], tmp_path, "inspect"
    )
    expected = f"trainable params: {row.trainable_params:,} || all params: {row.total_params:,}"
    assert any(line.startswith(expected) for line in report(cfg).splitlines())


def test_the_study_needs_a_sweep_or_a_run(tmp_path: Path) -> None:
    """Without -m the study has no single run to pick; Hydra names the choices."""
    with pytest.raises(Exception, match="reproduction_run"):
        compose_config(["experiment=reproduction"], tmp_path)


# --- compare refuses two conventions in one column ----------------------------------------


def test_compare_refuses_one_rouge_name_under_two_settings(tmp_path: Path, capsys) -> None:
    sweep = write_sweep(tmp_path / "sweep", RUNS[:2])
    for job, stem in ((0, "true"), (1, "false")):
        config = sweep / str(job) / ".hydra" / "config.yaml"
        config.write_text(
            config.read_text()
            + f"rouge:\n  mine:\n    use_stemmer: {stem}\n    lsum_split: sentences\n"
        )
    with pytest.raises(SystemExit) as exit_info:
        compare_main([str(sweep)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "logged ROUGE convention 'mine' with different settings" in error[0]
    # the same convention in both: the report is written
    config = sweep / "1" / ".hydra" / "config.yaml"
    config.write_text(config.read_text().replace("use_stemmer: false", "use_stemmer: true"))
    compare_main([str(sweep)])
    assert (sweep / "compare" / "report.md").is_file()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rouge.storygen.lsum_split=lines"], "rouge.storygen.lsum_split='lines' is not known"),
        (["rouge=with_hf", "rouge.hf.use_stemmer=true"], "rouge.hf: the `hf` convention is"),
    ],
)
def test_a_bad_rouge_setting_stops_training_with_one_line(
    overrides: list[str], message: str, tmp_path: Path, capsys
) -> None:
    cfg = compose_config([*TINY_RUN, "logger=none", *overrides], tmp_path)
    with pytest.raises(SystemExit) as exit_info, exit_on_user_error():
        train(cfg)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {message}"), errors


def test_a_convention_of_ones_own_logs_under_its_name(tmp_path: Path) -> None:
    """The fix the error line names: other settings under another name, other keys."""
    override = "+rouge.mine={use_stemmer:false,lsum_split:sentences}"
    cfg = compose_config([*TINY_RUN, override], tmp_path)
    callback = instantiate(cfg.callbacks.story_metrics)
    assert [c.name for c in callback.rouge] == ["storygen", "mine"]
    scores = score_stories(["The cats sat."], ["The cat sat."], [True], callback.rouge)
    assert scores["rouge1"] == 1.0 and scores["mine_rouge1"] == pytest.approx(2 / 3)


def test_study_table_never_fills_a_convention_with_another(tmp_path: Path) -> None:
    config = OmegaConf.create(
        {
            "model": {"backbone": {"architecture": {"_target_": "transformers.MistralConfig"}}},
            "data": {"corpus": {"_target_": "storygen.data.tinystories.TinyStoriesCorpus"}},
        }
    )
    run = ComparedRun(
        name="0",
        status="completed",
        metrics={
            "test/rouge1": 0.5,
            "test/rouge2": 0.25,
            "test/rougeL": 0.4,
            "test/rougeLsum": 0.45,
        },
        rouge={"storygen": {"use_stemmer": True, "lsum_split": "sentences"}},
        config=config,
    )
    markdown = reproduction_markdown(load_published(), [run], None)
    rows = [line for line in markdown.splitlines() if line.startswith("|  | storygen `0`")]
    rouge_rows = {
        row.split(" | ")[2]: row for row in rows if " | hf | " in row or "storygen |" in row
    }
    assert rouge_rows["hf"].endswith("| – | – | – | – |")  # logged no hf_*: never rouge1 there
    assert rouge_rows["storygen"].endswith("| 0.500 | 0.250 | 0.400 | 0.450 |")
    assert "| published | hf | 0.336 | 0.093 | 0.198 | 0.278 |" in markdown


# --- the one command, at toy scale --------------------------------------------------------


def run_command(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = run_module(module, *args, cwd=cwd, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def tiny_reproduction(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m storygen.train -m experiment=reproduction reproduction=tiny`, then
    `compare --reproduction`."""
    root = tmp_path_factory.mktemp("reproduction")
    sweep = root / "multirun" / "2026-11-30" / "12-00-00"
    run_command(
        "storygen.train",
        "-m",
        "experiment=reproduction",
        "reproduction=tiny",
        f"paths.root_dir={root}",
        f"hydra.sweep.dir={sweep}",
        cwd=root,
    )
    run_command("storygen.compare", str(sweep), "--reproduction", cwd=root)
    return sweep


def jobs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


@pytest.mark.slow
def test_tiny_reproduction_runs_three_jobs_in_one_wandb_group(tiny_reproduction: Path) -> None:
    groups, runs = set(), []
    for job in jobs(tiny_reproduction):
        record = json.loads((job / "run.json").read_text())
        assert record["status"] == "completed", record
        runs += [
            o.split("=", 1)[1] for o in record["overrides"] if o.startswith("reproduction_run=")
        ]
        (wandb_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
        groups |= {r.run.run_group for r in wandb_records(wandb_file) if r.HasField("run")}
    assert runs == [f"tiny_{run}" for run in REPRODUCTION_RUNS]
    assert groups == {"reproduction-2026-11-30-12-00-00"}


@pytest.mark.slow
def test_tiny_reproduction_logs_evaluates_rouge_and_the_report_shows_the_runs_numbers(
    tiny_reproduction: Path,
) -> None:
    report = (tiny_reproduction / "compare" / "reproduction.md").read_text()
    assert (tiny_reproduction / "compare" / "reproduction_lengths.png").stat().st_size > 0
    for run in read_local_runs([tiny_reproduction]):
        record = json.loads((tiny_reproduction / run.name / "run.json").read_text())
        metrics = record["metrics"]
        stories = [
            json.loads(line)
            for line in (tiny_reproduction / run.name / "generations" / "test.jsonl")
            .read_text()
            .splitlines()
        ]
        predictions = [s["generation"] for s in stories]
        references = [s["reference"] for s in stories]
        # the logged hf_* values are evaluate's rouge at its defaults on the run's own stories
        per_story = evaluate_rouge(predictions, references, use_aggregator=False)
        for key, values in per_story.items():
            assert metrics[f"test/hf_{key}"] == pytest.approx(sum(values) / len(values), abs=1e-6)
        # every number the report shows for the run is the run's own
        label = f"storygen `{run.name}` `reproduction_run="
        rows = [line for line in report.splitlines() if line.startswith(f"|  | {label}")]
        params = f"| {record['parameters']['trainable']:,} | {record['parameters']['total']:,} |"
        assert any(params in row and f"{metrics['val/loss']:.3f}" in row for row in rows)
        hf = "| hf | " + " | ".join(f"{metrics[f'test/hf_{k}']:.3f}" for k in per_story) + " |"
        ours = "| storygen | " + " | ".join(f"{metrics[f'test/{k}']:.3f}" for k in per_story) + " |"
        assert any(row.endswith(hf) for row in rows) and any(row.endswith(ours) for row in rows)
        distance = length_distance(word_counts(predictions), word_counts(references))
        assert any(
            f"| `{run.name}` `reproduction_run=" in line
            and line.endswith(f"| {distance['wasserstein']:.1f} | {distance['ks']:.3f} |")
            for line in report.splitlines()
        )
    published = load_published()
    for row in published.rows:
        assert f"| {row.trainable_params:,} | {row.total_params:,} |" in report


@pytest.mark.slow
def test_evaluate_rescores_a_reproduction_run_in_both_conventions_as_its_test_stage_did(
    tiny_reproduction: Path, tmp_path: Path
) -> None:
    """One `rouge` setting serves both paths: evaluate with `rouge=with_hf` on the model the
    run's test stage scored (test_ckpt=last: last.ckpt, saved at the end of training), with
    its prompts, batch size and cap, logs the same numbers under the same keys as the test
    stage."""
    run_dir = jobs(tiny_reproduction)[0]
    assert json.loads((run_dir / "run.json").read_text())["test_ckpt"] == "last"
    run_command(
        "storygen.evaluate",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "rouge=with_hf",
        "num_prompts=4",
        "batch_size=8",
        "generation.max_new_tokens=12",
        f"paths.root_dir={tmp_path}",
        cwd=tmp_path,
    )
    (out_dir,) = tmp_path.glob("outputs/evaluate/*/*")
    metrics = json.loads((out_dir / "metrics.json").read_text())
    trained = json.loads((run_dir / "run.json").read_text())["metrics"]
    rouge_keys = {k for k in metrics if "rouge" in k}
    assert rouge_keys == {f"{p}{t}" for p in ("", "hf_") for t in ROUGE_TYPES}
    for name in rouge_keys | {"loss", "len_wasserstein"}:
        assert float(np.float32(metrics[name])) == trained[f"test/{name}"], name


@pytest.mark.parametrize("preset", ["mistral_tinystories", "mistral_writingprompts"])
def test_a_mistral_preset_trains_a_small_subset_and_scores_the_model_it_ended_with(
    preset: str, tmp_path: Path
) -> None:
    """The preset's validation interval at 16 stories (8 batches of 2; a fixed 2,000 batches
    was refused by Lightning once the 7B model had loaded): validated at 3 and 6 of the 8
    batches and at the end, and the end's model is the one scored (test_ckpt=last)."""
    cfg = compose_config(
        [
            f"experiment={preset}",
            "model=mistral_tiny_lora",  # as reproduction_run/tiny_<preset>.yaml composes it
            "trainer=cpu",
            "data.corpus.source=sample",
            "data.max_train_samples=16",
            "data.max_eval_samples=4",
            "data.max_length=128",
            "data.num_workers=0",
            "logger=csv",
            "callbacks.story_metrics.num_prompts=0",
            "test=false",
            "export=false",
        ],
        tmp_path,
    )
    train(cfg)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "completed" and record["test_ckpt"] == "last"
    assert (record["plan"]["optimizer_steps"], record["plan"]["validations"]) == (2, 3)
    with (tmp_path / "csv" / "metrics.csv").open() as handle:
        rows = [row for row in csv.DictReader(handle)]
    losses = [float(row["val/loss"]) for row in rows if row.get("val/loss")]
    assert len(losses) == 3 and record["objective"] == pytest.approx(losses[-1], rel=1e-6)
