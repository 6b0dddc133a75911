"""The published study reproduced in one command (`-m experiment=reproduction`), its report
(`compare --reproduction`), and the ROUGE conventions that keep its columns honest.

The slow test runs the real command at toy scale (`reproduction=tiny`: three tiny runs, a few steps,
offline) and checks what it logged against the reference packages and the report's cells
against the runs' own files.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from storygen.compare.__main__ import main as compare_main
from storygen.compare.intervals import configuration_interval, configurations
from storygen.compare.published import PUBLISHED_FILE, load_published, printed_number
from storygen.compare.reproduction import (
    published_against_runs,
    published_side,
    reproduction_markdown,
)
from storygen.compare.sources import ComparedRun, read_local_runs
from storygen.environment.resolvers import seed_sweep
from storygen.errors import StorygenError, exit_on_user_error
from storygen.inspect import report
from storygen.metrics.intervals import Interval, mean_interval
from storygen.metrics.lengths import length_distance, word_counts
from storygen.metrics.rouge import ROUGE_TYPES
from storygen.metrics.story import score_stories
from storygen.train import train
from tests.conftest import TINY_RUN, compose_config, run_module
from tests.metrics.test_rouge import evaluate_rouge
from tests.test_compare import RUNS, write_sweep
from tests.wandb_records import wandb_records

# the tests of the module's tiny reproduction sweep in one test process, so it runs once
pytestmark = pytest.mark.xdist_group("tiny_reproduction")

REPRODUCTION_RUNS = ("gpt2_writingprompts", "mistral_tinystories", "mistral_writingprompts")
TINY_ROWS = {
    "tiny_gpt2_writingprompts": "GPT-2 · WritingPrompts",
    "tiny_mistral_tinystories": "Mistral-7B · TinyStories",
    "tiny_mistral_writingprompts": "Mistral-7B · WritingPrompts",
}


# --- the reproduction's configuration -----------------------------------------------------


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
def test_each_reproduction_run_composes_its_presets_settings(run: str, tmp_path: Path) -> None:
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
    """The data file's counts against storygen's offline count of each reproduction run's model."""
    (row,) = [row for row in load_published().rows if row.run == run]
    cfg = compose_config(
        ["experiment=reproduction", f"reproduction_run={run}"], tmp_path, "inspect"
    )
    expected = f"trainable params: {row.trainable_params} || all params: {row.total_params}"
    assert any(line.startswith(expected) for line in report(cfg).splitlines())


# The published study's figures exactly as it prints them (DESIGN.md, "The study being
# reproduced"); None: not stated.
PRINTED = {
    "gpt2_writingprompts": {
        "model": "GPT-2",
        "data": None,
        "trainable_params": "124,439,808",
        "total_params": "124,439,808",
        "trainable_share": "100.00%",
        "epochs": "3",
        "batch": None,
        "train_loss": "4.966",
        "train_loss_at": "epoch 3",
        "val_loss": "3.923",
        "val_loss_at": "epoch 3",
        "rouge": None,
    },
    "mistral_tinystories": {
        "model": "Mistral-7B",
        "data": "TinyStories",
        "trainable_params": "41,943,040",
        "total_params": "3,794,014,208",
        "trainable_share": "1.11%",
        "epochs": "1",
        "batch": "2 x 4",
        "train_loss": "0.3023",
        "train_loss_at": "epoch 1",
        "val_loss": None,
        "val_loss_at": None,
        "rouge": {"rouge1": "0.336", "rouge2": "0.093", "rougeL": "0.198", "rougeLsum": "0.278"},
    },
    "mistral_writingprompts": {
        "model": "Mistral-7B",
        "data": "WritingPrompts",
        "trainable_params": "41,943,040",
        "total_params": "3,794,014,208",
        "trainable_share": "1.11%",
        "epochs": "1",
        "batch": "2 x 4",
        "train_loss": "2.3151",
        "train_loss_at": "epoch 1",
        "val_loss": None,
        "val_loss_at": None,
        "rouge": {"rouge1": "0.271", "rouge2": "0.068", "rougeL": "0.140", "rougeLsum": "0.160"},
    },
}


def test_published_yaml_holds_every_figure_as_the_published_study_prints_it() -> None:
    rows = {row.run: row for row in load_published().rows}
    assert set(rows) == set(PRINTED)
    for run, figures in PRINTED.items():
        assert {name: getattr(rows[run], name) for name in figures} == figures, run
        assert 'PEFT LoRA, "with Unsloth"' in rows[run].method or run.startswith("gpt2")
    # the numbers compared are parsed from the printed text, every digit kept
    assert rows["mistral_tinystories"].number("train_loss") == 0.3023
    assert rows["mistral_writingprompts"].number("train_loss") == 2.3151
    assert rows["gpt2_writingprompts"].number("trainable_params") == 124_439_808
    assert rows["mistral_writingprompts"].number("rougeL") == 0.14
    assert printed_number("3,794,014,208") == 3_794_014_208


def reproduction_runs(tmp_path: Path, seeds: tuple[int, ...] = (3407,)) -> list[ComparedRun]:
    """The full reproduction's runs as compare reads them, from their composed configs."""
    return [
        ComparedRun(
            name=f"{run}-{seed}",
            status="completed",
            overrides=(f"reproduction_run={run}", f"seed={seed}"),
            config=compose_config(
                ["experiment=reproduction", f"reproduction_run={run}", f"seed={seed}"],
                tmp_path,
            ),
        )
        for run in REPRODUCTION_RUNS
        for seed in seeds
    ]


def settings_table(markdown: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(setting, published row) -> (value used, source), from reproduction.md's first table."""
    section = markdown.split("## Settings and their sources")[1].split("\n## ")[0]
    cells = {}
    for line in section.splitlines()[6:]:
        if line.startswith("| "):
            setting, rows, value, source = line[2:-2].split(" | ")
            for row in rows.split(", "):
                cells[setting, row] = (value, source)
    return cells


def test_the_settings_table_gives_each_runs_value_and_says_where_it_comes_from(
    tmp_path: Path,
) -> None:
    published = load_published()
    cells = settings_table(reproduction_markdown(published, reproduction_runs(tmp_path), None))
    gpt2, tiny, wp = (
        "GPT-2 · WritingPrompts",
        "Mistral-7B · TinyStories",
        "Mistral-7B · WritingPrompts",
    )
    assert {setting for setting, _ in cells} == {entry.setting for entry in published.settings}
    # what the published study states, quoted; storygen's choices, with the reason
    stated = {(s, r) for (s, r), (_, source) in cells.items() if source.startswith("published")}
    assert stated == {
        *(("model", row) for row in (gpt2, tiny, wp)),
        *(("method and library", row) for row in (gpt2, tiny, wp)),
        *(("epochs", row) for row in (gpt2, tiny, wp)),
        ("dataset", tiny),
        ("dataset", wp),
        ("batch per device x accumulation", tiny),
        ("batch per device x accumulation", wp),
    }
    for (setting, row), (_, source) in cells.items():
        if (setting, row) not in stated:
            assert source.startswith("storygen's choice: ") and len(source) > 30, setting
    assert cells["epochs", gpt2] == ("3", 'published study: "3"')
    assert cells["epochs", tiny] == ("1", 'published study: "1"')
    assert cells["batch per device x accumulation", wp] == ("2 x 4", 'published study: "2 x 4"')
    assert cells["batch per device x accumulation", gpt2][0] == "8 x 1"
    assert cells["dataset", tiny][1].startswith('published study: "TinyStories"')
    assert "not say which dataset the GPT-2 run used" in cells["dataset", gpt2][1]
    assert "peft + bitsandbytes, not Unsloth" in cells["method and library", tiny][1]
    assert cells["method and library", gpt2][0] == "every parameter trained, no quantization"
    # the values are the runs' own configs'
    assert cells["model", wp][0] == "mistralai/Mistral-7B-v0.1"
    assert cells["learning rate", tiny][0] == "0.0002"
    assert cells["learning rate", gpt2][0] == "5e-05"
    assert cells["max length (tokens)", wp][0] == "2048"
    assert cells["LoRA alpha and dropout", tiny][0] == "lora_alpha=16, lora_dropout=0.0"
    assert cells["LoRA rank and targets", gpt2][0] == "no LoRA"
    assert cells["prompt construction", wp][0].startswith("prompt_template=Prompt: {prompt}\\n")
    assert cells["test prompts scored", tiny][0] == "4000"
    assert cells["seed", gpt2][0] == "3407"


def test_the_settings_table_lists_every_seed_a_row_ran_with(tmp_path: Path) -> None:
    runs = reproduction_runs(tmp_path, seeds=(3407, 3408))
    cells = settings_table(reproduction_markdown(load_published(), runs, None))
    assert cells["seed", "Mistral-7B · TinyStories"][0] == "3407; 3408"
    assert cells["epochs", "Mistral-7B · TinyStories"][0] == "1"


def test_a_setting_neither_published_nor_explained_is_refused(tmp_path: Path) -> None:
    data = OmegaConf.load(PUBLISHED_FILE)
    del data.settings[0].detail  # the model: published for every run, needs no reason
    path = tmp_path / "published.yaml"
    OmegaConf.save(data, path)
    load_published(path)
    assert data.settings[7].setting == "batch per device x accumulation"
    data.settings[7].pop("choice")  # not stated for GPT-2
    OmegaConf.save(data, path)
    with pytest.raises(StorygenError, match="'batch per device x accumulation' is not stated"):
        load_published(path)


@pytest.mark.parametrize(
    ("point", "interval", "said"),
    [
        (0.336, Interval(0.30, 0.29, 0.31), "published above storygen's interval"),
        (0.336, Interval(0.35, 0.34, 0.36), "published below storygen's interval"),
        (0.336, Interval(0.33, 0.32, 0.34), "published inside storygen's interval"),
        (0.336, Interval(0.33, 0.32, 0.336), "published inside storygen's interval"),
        (0.336, Interval(0.34, 0.336, 0.35), "published inside storygen's interval"),
        (0.336, Interval(0.3, math.nan, math.nan), "no interval (fewer than two prompts)"),
    ],
)
def test_the_verdict_says_where_the_published_point_lies(
    point: float, interval: Interval, said: str
) -> None:
    assert published_side(point, interval) == said


@pytest.mark.parametrize(
    ("point", "values", "said"),
    [
        (0.3023, [0.25, 0.28], "published above every run"),
        (0.3023, [0.31, 0.35], "published below every run"),
        (0.3023, [0.29, 0.31], "published between the runs"),
        (0.3023, [0.29], "published above"),
        (0.3023, [], "–"),
    ],
)
def test_a_published_loss_is_placed_against_each_runs_own(
    point: float, values: list[float], said: str
) -> None:
    assert published_against_runs(point, values) == said


def scored_run(name: str, seed: int, scores: list[float]) -> ComparedRun:
    """A Mistral TinyStories run that kept per-story scores in both conventions."""
    config = OmegaConf.create(
        {
            "seed": seed,
            "model": {"backbone": {"architecture": {"_target_": "transformers.MistralConfig"}}},
            "data": {"corpus": {"_target_": "storygen.data.tinystories.TinyStoriesCorpus"}},
        }
    )
    keys = [f"{prefix}{kind}" for prefix in ("", "hf_") for kind in ROUGE_TYPES]
    return ComparedRun(
        name=name,
        status="completed",
        overrides=("reproduction_run=mistral_tinystories", f"seed={seed}"),
        metrics={f"test/{key}": float(np.mean(scores)) for key in keys},
        prompts=tuple(f"prompt {i}" for i in range(len(scores))),
        references=tuple(f"story {i}" for i in range(len(scores))),
        story_scores=tuple(dict.fromkeys(keys, score) for score in scores),
        config=config,
    )


def rouge_line(
    markdown: str, convention: str, kind: str, row: str = "Mistral-7B · TinyStories"
) -> list[str]:
    """The cells of the ROUGE table's line for one published row, convention and ROUGE type."""
    (line,) = [
        line
        for line in markdown.split("## ROUGE")[1].splitlines()
        if line.startswith(f"| {row} |") and f"| {convention} | {kind} |" in line
    ]
    return line[2:-2].split(" | ")


def test_rouge_is_a_mean_and_interval_over_seeds_and_prompts_beside_the_published_point() -> None:
    rng = np.random.default_rng(1)
    runs = [scored_run(f"{i}", 3407 + i, list(rng.uniform(0.2, 0.4, 40))) for i in range(3)]
    markdown = reproduction_markdown(load_published(), runs, None)
    (config,) = configurations(runs)
    interval, prompts = configuration_interval(config, "hf_rouge1")
    cells = rouge_line(markdown, "hf", "rouge1")
    assert cells[1] == "`0` (seed 3407), `1` (seed 3408), `2` (seed 3409)"
    assert cells[4] == "0.336"
    assert cells[5] == str(interval) and cells[6] == "3 seeds x 40 prompts"
    assert cells[7] == published_side(0.336, interval)
    # storygen's own convention stands beside it, never against the published figure
    assert rouge_line(markdown, "storygen", "rouge1")[4:] == [
        "–",
        str(configuration_interval(config, "rouge1")[0]),
        "3 seeds x 40 prompts",
        "not compared (another convention)",
    ]


def test_one_seeds_interval_is_over_prompts_only() -> None:
    scores = [0.1, 0.2, 0.3, 0.5, 0.6]
    markdown = reproduction_markdown(load_published(), [scored_run("0", 3407, scores)], None)
    cells = rouge_line(markdown, "hf", "rouge2")
    assert (
        cells[5] == str(mean_interval(scores)) and cells[6] == "5 prompts (one seed: prompts only)"
    )
    assert cells[7] == "published below storygen's interval"  # 0.093 below [~0.2, ~0.5]


def test_reproduction_sweeps_its_seeds_as_jobs_of_one_sweep(tmp_path: Path) -> None:
    """`seed` is a sweeper param: 3407 and the next ones, reproduction.seeds in all."""
    full = compose_config(
        ["experiment=reproduction", "reproduction_run=gpt2_writingprompts"], tmp_path
    )
    assert full.hydra.sweeper.params.seed == "3407,3408,3409"
    tiny = compose_config(
        [
            "experiment=reproduction",
            "reproduction=tiny",
            "reproduction_run=tiny_gpt2_writingprompts",
        ],
        tmp_path,
    )
    assert tiny.hydra.sweeper.params.seed == "3407"
    assert seed_sweep(42, 2) == "42,43"
    with pytest.raises(StorygenError, match="reproduction.seeds=0"):
        seed_sweep(3407, 0)


def test_every_seed_of_tinystories_scores_the_same_test_prompts(tmp_path: Path) -> None:
    cfg = compose_config(
        ["experiment=reproduction", "reproduction_run=mistral_tinystories", "seed=3408"], tmp_path
    )
    assert cfg.seed == cfg.data.seed == 3408 and cfg.data.corpus.seed == 3407
    story_metrics = cfg.callbacks.story_metrics
    assert story_metrics.num_test_prompts == cfg.data.max_eval_samples == 4000


def test_the_reproduction_needs_a_sweep_or_a_run(tmp_path: Path) -> None:
    """Without -m the reproduction has no single run to pick; Hydra names the choices."""
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


def test_the_rouge_table_never_fills_a_convention_with_another(tmp_path: Path) -> None:
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
    hf = [rouge_line(markdown, "hf", kind) for kind in ROUGE_TYPES]
    ours = [rouge_line(markdown, "storygen", kind) for kind in ROUGE_TYPES]
    # logged no hf_*: never rouge1 there, and no verdict on a number it does not have
    assert [cells[4:6] for cells in hf] == [
        ["0.336", "–"],
        ["0.093", "–"],
        ["0.198", "–"],
        ["0.278", "–"],
    ]
    assert [cells[5] for cells in ours] == ["0.5000", "0.2500", "0.4000", "0.4500"]
    assert all(cells[6] == "no per-story scores: no interval" for cells in hf + ours)


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
        assert "seed=3407" in record["overrides"]  # the seed sweep: one seed on tiny
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
        (run_name,) = [o for o in run.overrides if o.startswith("reproduction_run=")]
        row = TINY_ROWS[run_name.removeprefix("reproduction_run=")]
        params = f"| {record['parameters']['trainable']:,} | {record['parameters']['total']:,} |"
        assert f"|  | storygen `{run.name}` {params}" in report
        (val_loss,) = [
            line for line in report.splitlines() if line.startswith(f"| {row} | val loss |")
        ]
        assert f"| `{run.name}` (seed 3407) | {metrics['val/loss']:.4f} |" in val_loss
        # ROUGE: the mean and 95% interval of the run's own per-story scores, as compare's
        # interval code gives them, over prompts only (one seed)
        for key in per_story:
            for convention, name in (("hf", f"hf_{key}"), ("storygen", key)):
                scores = [story["scores"][name] for story in stories]
                interval = mean_interval(scores)
                assert interval.mean == pytest.approx(metrics[f"test/{name}"], abs=1e-6)
                cells = rouge_line(report, convention, key, row)
                assert cells[1] == f"`{run.name}` (seed 3407)" and cells[5] == str(interval)
                assert cells[6] == "4 prompts (one seed: prompts only)"
                (config,) = configurations([run])
                assert cells[5] == str(configuration_interval(config, name)[0])
        # the settings table: this run's own values, each with its source
        cells = settings_table(report)
        assert cells["seed", row][0] == "3407" and cells["test prompts scored", row][0] == "4"
        assert cells["training stories per run", row][0] == "16"
        assert cells["epochs", row] == (
            (epochs := str(run.config.trainer.max_epochs)),
            f'published study: "{epochs}"',
        )
        assert cells["learning rate", row][0] == str(run.config.model.optimizer.lr)
        assert cells["learning rate", row][1].startswith("storygen's choice: ")
        distance = length_distance(word_counts(predictions), word_counts(references))
        assert any(
            line.startswith(f"| {row} | `{run.name}` |")
            and line.endswith(f"| {distance['wasserstein']:.1f} | {distance['ks']:.3f} |")
            for line in report.splitlines()
        )
    published = load_published()
    for row in published.rows:
        assert f"| published | {row.trainable_params} | {row.total_params} |" in report


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
