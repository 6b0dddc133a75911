"""How many test prompts a ROUGE-1 mean needs for a 95% interval narrower than `--width`:
the per-story spread (sd), and n > (2 x 1.96 x sd / width)^2.

Without arguments the stories are stand-ins for a fine-tuned model's: each bundled TinyStories
story's continuation (after its opening sentence, as storygen prompts it) scored against the
next story's, in evaluate's convention (the one compared with the published figures). With
run dirs, the per-story scores their test stages kept (generations/test.jsonl). It prints the
mean, the sd, the prompts needed, and the width of storygen's own interval (the one
reproduction.md shows) at the prompts scored. conf/reproduction/full.yaml's
num_test_prompts comes from the first form.

    python tools/rouge_spread.py [RUN_DIR ...] [--metric hf_rouge1] [--width 0.01]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storygen.data.sentences import split_opening  # noqa: E402
from storygen.data.tinystories import SAMPLE_FILES, read_stories_txt  # noqa: E402
from storygen.metrics.intervals import mean_interval  # noqa: E402
from storygen.metrics.rouge import HF, rouge_per_story  # noqa: E402
from storygen.run.record import GENERATIONS_DIR  # noqa: E402


def stand_in_scores(metric: str) -> list[float]:
    stories = [story for path in SAMPLE_FILES.values() for story in read_stories_txt(path)]
    rests = [split_opening(story, 1)[1].strip() for story in stories]
    others = rests[1:] + rests[:1]
    return rouge_per_story(others, rests, HF)[metric]


def run_scores(run_dir: Path, metric: str) -> list[float]:
    lines = (run_dir / GENERATIONS_DIR / "test.jsonl").read_text().splitlines()
    return [json.loads(line)["scores"][metric] for line in lines]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="*", type=Path, help="run dirs (default: the stand-in)")
    parser.add_argument("--metric", default="hf_rouge1")
    parser.add_argument("--width", type=float, default=0.01)
    args = parser.parse_args()
    sources = {str(run): run_scores(run, args.metric) for run in args.runs} or {
        "bundled TinyStories, each continuation against the next": stand_in_scores(args.metric)
    }
    for name, scores in sources.items():
        sd = statistics.stdev(scores)
        needed = math.ceil((2 * 1.96 * sd / args.width) ** 2)
        interval = mean_interval(scores)
        print(
            f"{name}: {len(scores)} stories, {args.metric} mean {statistics.mean(scores):.3f} "
            f"sd {sd:.3f}; width < {args.width} needs n > {needed:,}; storygen's interval at "
            f"n={len(scores)}: {interval} (width {interval.high - interval.low:.4f})"
        )


if __name__ == "__main__":
    main()
