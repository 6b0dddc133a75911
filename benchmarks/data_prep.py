"""Data preparation at the datasets' full shape: first run, cached run, peak memory, and the
ratio to a raw batched encode of the same texts measured in the same process.

    python benchmarks/data_prep.py [--scale 1] [--datasets tinystories writingprompts]
                                   [--num-proc 1 default] [--tokenize-train default ahead]
                                   [--memory-limit-mb 2048]

Writes synthetic corpora in the files the loaders read (TinyStoriesV2 .txt; WritingPrompts'
{train,valid,test}.wp_source/.wp_target, PTB-tokenized with `<newline>`) at the real split
sizes times `--scale`, with the real length distributions (below), cut from the bundled
samples' sentences. Each (dataset, num_proc) pair runs in a fresh child process: the
StoryDataModule prepares the splits with an empty cache (first run) and loads them again
(cached), then the prepared texts are encoded by one batched fast-tokenizer call per 1,000
(the raw encode), and the loader reads 500 train batches of 8 in this process. Peak RSS is the
child's own and its largest worker's. `default` is data.num_proc's or data.tokenize_train's
default (null: chosen from the cores and the data's size). With --memory-limit-mb each child runs
in a memory cgroup of that size (Linux; cgroup v1 or v2, as root), whose peak is reported: page
cache and mapped files count there and are reclaimed at the limit, the heap cannot be, so a
child that needs more is killed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from storygen.data import streams
from storygen.data.datamodule import StoryDataModule
from storygen.data.tinystories import SAMPLE_FILES, TinyStoriesCorpus, read_stories_txt
from storygen.data.writingprompts import SAMPLE_DIR, WritingPromptsCorpus, read_lines
from storygen.models.loader import build_offline_gpt2_tokenizer

ROOT = Path(__file__).resolve().parent.parent
# The real splits (docs/DESIGN "Data facts"): stories per file.
TINYSTORIES_SIZES = {"train": 2_119_719, "valid": 21_990}
WRITINGPROMPTS_SIZES = {"train": 272_600, "valid": 15_620, "test": 15_138}
# TinyStories: mean ~222 GPT-2 tokens, p99 ~641 -> lognormal(mu 5.27, sigma 0.513), at the
# sample's ~4.1 characters per token. WritingPrompts: stories of 734 words on average (Fan et
# al. 2018, table 1) with a long tail (sigma 0.6 assumed: p99 ~2,700 words), at least 30.
TINY_TOKENS = (5.27, 0.513)
TINY_CHARS_PER_TOKEN = 4.1
WP_WORDS = (np.log(734) - 0.6**2 / 2, 0.6)


def write_tinystories(folder: Path, scale: float, rng: np.random.Generator) -> dict[str, Path]:
    """TinyStoriesV2-GPT4-{train,valid}.txt: stories cut from the sample at sentence starts."""
    stream = " ".join(" ".join(read_stories_txt(SAMPLE_FILES["train"])).split(" ")) * 4
    starts = np.array([0] + [m.end() for m in re.finditer(r"[.!?] (?=[A-Z])", stream)])
    starts = starts[starts < len(stream) - 20_000]
    files = {}
    for split, full in TINYSTORIES_SIZES.items():
        count = max(100, round(full * scale))
        chars = rng.lognormal(*TINY_TOKENS, count) * TINY_CHARS_PER_TOKEN
        begin = rng.choice(starts, count)
        end = starts[np.minimum(np.searchsorted(starts, begin + chars), len(starts) - 1)]
        files[split] = folder / f"TinyStoriesV2-GPT4-{split}.txt"
        with files[split].open("w", encoding="utf-8") as handle:
            for a, b in zip(begin.tolist(), end.tolist()):
                handle.write(f"{stream[a:b].strip()}\n<|endoftext|>\n")
    return files


def write_writingprompts(folder: Path, scale: float, rng: np.random.Generator) -> Path:
    """{train,valid,test}.wp_source/.wp_target: real sample prompts, stories cut from the
    sample's PTB-tokenized words (`<newline>` tokens included) to the drawn word counts."""
    prompts = [
        p
        for split in ("train", "valid", "test")
        for p in read_lines(SAMPLE_DIR / f"{split}.wp_source")
    ]
    words = " ".join(
        line
        for split in ("train", "valid", "test")
        for line in read_lines(SAMPLE_DIR / f"{split}.wp_target")
    ).split(" ")
    words = words * (1 + 40_000 // len(words))
    stream = " ".join(words)
    offsets = np.cumsum([0] + [len(w) + 1 for w in words])
    for split, full in WRITINGPROMPTS_SIZES.items():
        count = max(100, round(full * scale))
        lengths = np.clip(rng.lognormal(*WP_WORDS, count), 30, 12_000).astype(int)
        begin = rng.integers(0, len(words) - 12_000, count)
        with (folder / f"{split}.wp_source").open("w", encoding="utf-8") as source:
            for index in rng.integers(0, len(prompts), count).tolist():
                source.write(prompts[index] + "\n")
        with (folder / f"{split}.wp_target").open("w", encoding="utf-8") as target:
            for a, n in zip(begin.tolist(), lengths.tolist()):
                target.write(stream[offsets[a] : offsets[a + n] - 1] + "\n")
    return folder


def peak_rss_mb() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child, in MB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, child


class AnonymousPeak(threading.Thread):
    """Peak anonymous resident memory (RssAnon: heap, not the memory-mapped Arrow files whose
    pages the kernel may drop) of this process and of its largest worker, sampled every 0.1 s.
    ru_maxrss counts mapped file pages too, so it grows with the corpus the splits map."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.own = self.worker = 0.0

    @staticmethod
    def anon_mb(pid: int | str) -> float:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            return 0.0
        kb = re.search(r"RssAnon:\s+(\d+)", status)
        return int(kb.group(1)) / 1024 if kb else 0.0

    def run(self) -> None:
        while True:
            self.own = max(self.own, self.anon_mb("self"))
            for children in Path("/proc/self/task").glob("*/children"):
                for pid in children.read_text().split():
                    self.worker = max(self.worker, self.anon_mb(pid))
            time.sleep(0.1)


def child(dataset: str, folder: Path, num_proc: int | None, tokenize_train: str | None) -> dict:
    """Prepare one corpus twice (empty cache, then cached) and encode its texts raw."""
    settings = OmegaConf.load(ROOT / "conf" / "data" / f"{dataset}.yaml")
    if dataset == "tinystories":
        corpus = TinyStoriesCorpus(
            source="files",
            train_file=str(folder / "TinyStoriesV2-GPT4-train.txt"),
            validation_file=str(folder / "TinyStoriesV2-GPT4-valid.txt"),
        )
    else:
        corpus = WritingPromptsCorpus(source="files", data_dir=str(folder))
    tokenizer = build_offline_gpt2_tokenizer()

    def prepared() -> StoryDataModule:
        datamodule = StoryDataModule(
            corpus,
            tokenizer,
            prompt_template=settings.prompt_template,
            train_on_prompt=settings.train_on_prompt,
            max_length=settings.max_length,
            num_proc=num_proc,
            tokenize_train=tokenize_train,
            num_workers=0,
            cache_dir=str(folder / "prepared"),
        )
        datamodule.setup()
        return datamodule

    parallelism = os.environ.get("TOKENIZERS_PARALLELISM")
    anonymous = AnonymousPeak()
    anonymous.start()
    start = time.perf_counter()
    datamodule = prepared()
    first = time.perf_counter() - start
    rss_first = peak_rss_mb()
    anon_first = anonymous.own, anonymous.worker
    start = time.perf_counter()
    prepared()
    cached = time.perf_counter() - start

    train = datamodule.tokenized["train"]
    start = time.perf_counter()
    for _ in zip(range(500), datamodule.train_dataloader()):
        pass
    batch_ms = (time.perf_counter() - start) / 500 * 1000

    # datasets sets TOKENIZERS_PARALLELISM=false in the C environment for a num_proc map and
    # restores only Python's os.environ, which leaves this process's tokenizer on one thread:
    # the raw encode gets back the setting the process started with
    if parallelism is None:
        os.unsetenv("TOKENIZERS_PARALLELISM")
    else:
        os.putenv("TOKENIZERS_PARALLELISM", parallelism)
    # the prepared texts: WritingPrompts' train stories tokenized as loaded are still the raw
    # PTB-spaced ones (cleaning them here would take ~15 min at full size), a few per cent more
    # tokens than the cleaned text
    raw = 0.0
    for split in datamodule.stories.values():
        for batch in split.iter(batch_size=1_000):
            texts = [
                settings.prompt_template.format(prompt=prompt) + story
                for prompt, story in zip(batch["prompt"], batch["story"])
            ]
            start = time.perf_counter()
            tokenizer(texts, add_special_tokens=False, return_attention_mask=False)
            raw += time.perf_counter() - start
    return {
        "stories": sum(len(split) for split in datamodule.stories.values()),
        # train's processes (an older storygen, run for a before/after, lacks the function)
        "num_proc": getattr(streams, "processes", lambda n, _: n)(
            num_proc, datamodule.stories["train"].data.nbytes
        )
        or 1,
        "tokenize_train": "ahead" if "input_ids" in train.column_names else "as_loaded",
        "batch_ms": batch_ms,
        "first": first,
        "cached": cached,
        "raw": raw,
        "rss": rss_first[0],
        "worker_rss": rss_first[1],
        "anon": anon_first[0],
        "worker_anon": anon_first[1],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of the real split sizes")
    parser.add_argument(
        "--datasets", nargs="+", default=["tinystories", "writingprompts"],
        choices=["tinystories", "writingprompts"],
    )  # fmt: skip
    parser.add_argument("--num-proc", nargs="+", default=["1", "default"])
    parser.add_argument("--tokenize-train", nargs="+", default=["default"])
    parser.add_argument("--memory-limit-mb", type=int, help="run each child in a memory cgroup")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dataset, folder, num_proc, tokenize_train = args.child
        result = child(
            dataset,
            Path(folder),
            None if num_proc == "default" else int(num_proc),
            None if tokenize_train == "default" else tokenize_train,
        )
        print("RESULT " + json.dumps(result))
        return

    print(f"scale {args.scale}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    header = ["dataset", "num_proc", "tokenize_train", "stories", "first run s", "cached s",
              "raw encode s", "first / raw", "ms per train batch", "peak RSS MB (main, worker)",
              "peak RssAnon MB (main, worker)"]  # fmt: skip
    if args.memory_limit_mb:
        header.append(f"cgroup peak MB (limit {args.memory_limit_mb:,})")
    print(" | ".join(header))
    for dataset in args.datasets:
        with tempfile.TemporaryDirectory() as tmp:
            folder, rng = Path(tmp), np.random.default_rng(args.seed)
            start = time.perf_counter()
            write = write_tinystories if dataset == "tinystories" else write_writingprompts
            write(folder, args.scale, rng)
            size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
            print(f"# {dataset}: wrote {size:,.0f} MB in {time.perf_counter() - start:.0f} s")
            for num_proc, tokenize_train in itertools.product(args.num_proc, args.tokenize_train):
                result = run_child(dataset, folder, num_proc, tokenize_train, args.memory_limit_mb)
                print(
                    f"{dataset} | {num_proc} ({result['num_proc']}) | "
                    f"{tokenize_train} ({result['tokenize_train']}) | {result['stories']:,} | "
                    f"{result['first']:.1f} | {result['cached']:.2f} | {result['raw']:.1f} | "
                    f"{result['first'] / result['raw']:.2f} | {result['batch_ms']:.2f} | "
                    f"{result['rss']:,.0f}, {result['worker_rss']:,.0f} | "
                    f"{result['anon']:,.0f}, {result['worker_anon']:,.0f}"
                    + (f" | {result['cgroup_peak']:,.0f}" if args.memory_limit_mb else ""),
                    flush=True,
                )


def run_child(
    dataset: str, folder: Path, num_proc: str, tokenize_train: str, memory_limit_mb: int | None
) -> dict:
    """One measurement in a fresh process: peak RSS is its own, and nothing is warm."""
    for prepared in folder.glob("prepared"):
        subprocess.run(["rm", "-rf", str(prepared)], check=True)
    command = [sys.executable, __file__, "--child", dataset, str(folder), num_proc, tokenize_train]
    cgroup = memory_cgroup(memory_limit_mb) if memory_limit_mb else None
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            preexec_fn=(lambda: (cgroup / "cgroup.procs").write_text(str(os.getpid())))
            if cgroup
            else None,
        )
        peak = cgroup_peak_mb(cgroup) if cgroup else None
    finally:
        if cgroup:
            cgroup.rmdir()
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        killed = " (killed: over the memory limit?)" if done.returncode == -9 else ""
        sys.exit(f"{' '.join(command)} failed{killed}:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("RESULT ")) | {"cgroup_peak": peak}


def memory_cgroup(limit_mb: int) -> Path:
    """A new memory cgroup below this process's own, limited to `limit_mb`."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "memory":  # cgroup v1
            cgroup = Path("/sys/fs/cgroup/memory") / path.lstrip("/") / f"data_prep-{os.getpid()}"
            cgroup.mkdir()
            (cgroup / "memory.limit_in_bytes").write_text(str(limit_mb * 2**20))
            return cgroup
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):  # cgroup v2
            cgroup = Path("/sys/fs/cgroup") / line[3:].lstrip("/") / f"data_prep-{os.getpid()}"
            cgroup.mkdir()
            (cgroup / "memory.max").write_text(str(limit_mb * 2**20))
            return cgroup
    sys.exit("--memory-limit-mb needs a Linux memory cgroup this process may create")


def cgroup_peak_mb(cgroup: Path) -> float:
    name = (
        "memory.max_usage_in_bytes"
        if (cgroup / "memory.limit_in_bytes").exists()
        else "memory.peak"
    )
    return int((cgroup / name).read_text()) / 2**20


if __name__ == "__main__":
    main()
