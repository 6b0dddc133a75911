"""Training end to end through the real config tree, on a tiny GPT-2 and the bundled sample."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import open_dict

from storygen.errors import StorygenError
from storygen.run_summary import train_loss_curve
from storygen.train import train
from tests.conftest import ROOT, TINY_RUN, compose_config


def wandb_run_file(output_dir: Path) -> Path:
    runs = sorted(output_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    return runs[0]


def test_fit_and_test_write_checkpoints_metrics_and_a_wandb_run(tiny_run_config, tmp_path):
    metrics = train(tiny_run_config)

    assert {"val/loss", "val/rouge1", "val/rouge2", "val/rougeL", "test/loss"} <= metrics.keys()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert train_loss_curve(tmp_path / "csv" / "metrics.csv")
    csv_header = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "val/rouge1" in csv_header and "val/loss" in csv_header
    run_bytes = wandb_run_file(tmp_path).read_bytes()
    for key in (
        b"train/loss",
        b"val/loss",
        b"val/rouge1",
        b"val/rougeLsum",
        b"val/distinct2",
        b"val/eos_rate",
        b"val/generations",
        b"val/length_histogram",
    ):
        assert key in run_bytes, key


def test_loss_falls_over_a_real_epoch(tmp_path):
    overrides = [o for o in TINY_RUN if not o.startswith("data.max_train_samples")]
    cfg = compose_config(
        [
            *overrides,
            "data.max_train_samples=240",
            "logger=csv",
            "callbacks.story_metrics.num_prompts=0",
        ],
        tmp_path,
    )
    with open_dict(cfg):
        cfg.test = False
    train(cfg)
    losses = train_loss_curve(tmp_path / "csv" / "metrics.csv")
    assert len(losses) == 30
    # from ~ln(50257) = 10.8 at random init to well below it in one epoch
    assert losses[0] > 10.0
    assert sum(losses[-5:]) / 5 < losses[0] - 3.0


def test_writingprompts_sample_trains_with_the_prompt_masked_in_length_groups(tmp_path):
    overrides = [o for o in TINY_RUN if o != "data=tinystories"]
    cfg = compose_config(
        [
            *overrides,
            "data=writingprompts",
            "data.corpus.source=sample",
            "logger=csv",
            "data.group_by_length=true",
        ],
        tmp_path,
    )
    metrics = train(cfg)
    assert metrics["val/loss"] < 10.8 and "test/rouge1" in metrics


@pytest.mark.parametrize(
    ("whole_stories", "batches"), [(True, 5), (False, 4)], ids=["whole", "run-on"]
)
def test_packed_training_runs_and_validates_on_unpacked_stories(whole_stories, batches, tmp_path):
    cfg = compose_config(
        [
            *TINY_RUN,
            "logger=csv",
            "data.max_length=256",
            "data.packing=true",
            f"data.pack_whole_stories={whole_stories}",
            "callbacks.story_metrics.num_prompts=0",
        ],
        tmp_path,
    )
    with open_dict(cfg):
        cfg.test = False
    metrics = train(cfg)
    losses = train_loss_curve(tmp_path / "csv" / "metrics.csv")
    # 48 stories of 108-170 tokens make 6 batches of 8 unpacked; whole, only the short ones
    # pair up in 256 tokens (5 batches); run on, they fill 26 rows (4 batches)
    assert len(losses) == batches and metrics["val/loss"] < 10.8


def test_a_streamed_run_trains_for_max_steps_and_asks_for_them(tmp_path):
    streamed = [*TINY_RUN, "logger=csv", "data.streaming=true"]
    streamed += ["callbacks.story_metrics.num_prompts=0"]
    with pytest.raises(StorygenError, match="set trainer.max_steps"):
        train(compose_config(streamed, tmp_path / "no-steps"))
    cfg = compose_config(
        [*streamed, "trainer.max_steps=3", "trainer.val_check_interval=3"], tmp_path
    )
    with open_dict(cfg):
        cfg.test = False
    metrics = train(cfg)
    assert len(train_loss_curve(tmp_path / "csv" / "metrics.csv")) == 3
    assert metrics["val/loss"] < 10.9


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "storygen.train", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.slow
def test_quickstart_runs_offline_and_the_loss_falls(tmp_path):
    result = run_cli("experiment=quickstart", f"paths.root_dir={tmp_path}", cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    first, last = map(
        float, re.search(r"train/loss\s*: first ([\d.]+) -> last ([\d.]+)", output).groups()
    )
    assert last < first - 3.0
    for label in ("best checkpoint", "CSV metrics", "W&B run dir", "--- story 2 ---"):
        assert label in output
    run_dir = Path(re.search(r"W&B run dir\s*: (\S+)", output).group(1))
    run_bytes = next(run_dir.glob("run-*.wandb")).read_bytes()
    assert b"train/loss" in run_bytes and b"val/rouge1" in run_bytes


def test_a_file_in_the_wrong_format_is_named(tmp_path):
    stories = tmp_path / "stories.csv"
    stories.write_text("text\nOnce upon a time.\n")
    result = run_cli(
        *TINY_RUN,
        "data.corpus.source=files",
        f"data.corpus.train_file={stories}",
        f"data.corpus.validation_file={stories}",
        f"paths.root_dir={tmp_path}",
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert f"error: {stories} has an unsupported format '.csv'" in result.stderr
    assert "Traceback" not in result.stderr
