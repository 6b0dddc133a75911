"""data.streaming=true: the train split streams, and yields what the unstreamed run trains on.

The hub path is exercised on a local folder in the hub's layout (`data/<split>-*.parquet`),
which `datasets.load_dataset` reads the way it reads a downloaded hub repository.
"""

from __future__ import annotations

import logging
from itertools import islice
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import IterableDataset

from storygen.data import streams
from storygen.data.datamodule import StoryDataModule
from storygen.data.tinystories import SAMPLE_FILES, TinyStoriesCorpus, read_stories_txt
from storygen.data.writingprompts import SAMPLE_DIR, WritingPromptsCorpus, read_split_files
from storygen.errors import StorygenError
from storygen.models.loader import build_offline_gpt2_tokenizer
from storygen.run.checks import check_streaming_across_devices

TOKENIZER = build_offline_gpt2_tokenizer()


def write_hub_layout(root: Path, splits: dict[str, dict[str, list[str]]]) -> Path:
    (root / "data").mkdir(parents=True)
    for split, columns in splits.items():
        pq.write_table(pa.table(columns), root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def tinystories_hub(root: Path) -> Path:
    return write_hub_layout(
        root,
        {
            "train": {"text": read_stories_txt(SAMPLE_FILES["train"])[:64]},
            "validation": {"text": read_stories_txt(SAMPLE_FILES["validation"])},
        },
    )


def writingprompts_hub(root: Path) -> Path:
    splits = {}
    for split, name in (("train", "train"), ("validation", "valid"), ("test", "test")):
        pairs = read_split_files(SAMPLE_DIR, name)
        splits[split] = {"prompt": pairs["prompt"], "story": pairs["story"]}
    return write_hub_layout(root, splits)


def prepared(corpus, streaming: bool, **options) -> StoryDataModule:
    data = StoryDataModule(corpus, TOKENIZER, max_length=256, streaming=streaming, **options)
    data.setup()
    return data


def train_rows(data: StoryDataModule) -> list[tuple[int, ...]]:
    """Every training row of an epoch without its padding, in a fixed order."""
    return sorted(
        tuple(ids[mask.bool()].tolist())
        for batch in data.train_dataloader()
        for ids, mask in zip(batch["input_ids"], batch["attention_mask"])
    )


@pytest.mark.parametrize(
    ("make_hub", "corpus_type"),
    [(tinystories_hub, TinyStoriesCorpus), (writingprompts_hub, WritingPromptsCorpus)],
    ids=["tinystories", "writingprompts"],
)
def test_a_streamed_hub_corpus_trains_on_the_same_stories_and_scores_the_same(
    make_hub, corpus_type, tmp_path
):
    corpus = corpus_type(source="hub", hub_id=str(make_hub(tmp_path / "hub")))
    streamed, whole = prepared(corpus, streaming=True), prepared(corpus, streaming=False)

    assert isinstance(streamed.tokenized["train"], IterableDataset)
    for split in ("validation", "test"):
        assert streamed.stories[split]["story"] == whole.stories[split]["story"]
    assert train_rows(streamed) == train_rows(whole)


def test_streamed_local_files_pack_and_stop_at_max_train_samples(tmp_path):
    corpus = TinyStoriesCorpus(source="sample")
    streamed = prepared(corpus, streaming=True, max_train_samples=40, packing=True)
    whole = prepared(corpus, streaming=False, max_train_samples=40, packing=True)
    # packing works within a map batch of 1000 stories, so 40 stories pack the same way
    assert train_rows(streamed) == train_rows(whole)


def test_streaming_cannot_group_by_length():
    with pytest.raises(StorygenError, match="group_by_length=true sorts stories by length"):
        StoryDataModule(
            TinyStoriesCorpus(source="sample"), TOKENIZER, streaming=True, group_by_length=True
        )


def test_each_ddp_rank_streams_its_own_share_of_the_stories_and_repeats_it(tmp_path):
    corpus = TinyStoriesCorpus(source="hub", hub_id=str(tinystories_hub(tmp_path / "hub")))
    shares = []
    for rank in (0, 1):
        data = prepared(corpus, streaming=True)
        data.trainer = SimpleNamespace(world_size=2, global_rank=rank)  # what DDP gives rank r
        batches = islice(data.train_dataloader(), 8)  # 64 stories: 4 batches of 8 per share
        rows = [
            tuple(ids[mask.bool()].tolist())
            for b in batches
            for ids, mask in zip(b["input_ids"], b["attention_mask"])
        ]
        first_pass, second_pass = rows[:32], rows[32:]
        assert sorted(second_pass) == sorted(first_pass)  # a share never runs dry
        shares.append(first_pass)
    assert not set(shares[0]) & set(shares[1])
    # the whole stream's rows are the unstreamed split's (the test above), read here without
    # streaming: datasets sleeps 5 s each time a streamed parquet reader ends (arrow#45214)
    assert sorted(shares[0] + shares[1]) == train_rows(prepared(corpus, streaming=False))


def test_blank_hub_stories_are_skipped_and_counted_streamed_or_not(tmp_path, caplog):
    stories = read_stories_txt(SAMPLE_FILES["train"])[:8]
    hub = write_hub_layout(
        tmp_path / "hub",
        {
            "train": {"text": [*stories[:4], "", "  \n ", None, *stories[4:]]},
            "validation": {"text": read_stories_txt(SAMPLE_FILES["validation"])},
        },
    )
    corpus = TinyStoriesCorpus(source="hub", hub_id=str(hub))
    with caplog.at_level(logging.WARNING):
        assert len(corpus.load()["train"]) == 8
    assert f"Skipped 3 rows with an empty text in {hub} train" in caplog.text
    assert len(list(corpus.load(streaming=True)["train"])) == 8


def test_a_stream_across_devices_validates_every_n_steps():
    def ddp(**options) -> L.Trainer:
        return L.Trainer(accelerator="cpu", strategy="ddp", devices=2, logger=False, **options)

    with pytest.raises(StorygenError, match=r"set trainer.val_check_interval=<steps>"):
        check_streaming_across_devices(ddp(), streaming=True)
    check_streaming_across_devices(ddp(val_check_interval=100), streaming=True)
    check_streaming_across_devices(ddp(), streaming=False)


@pytest.mark.parametrize(
    ("num_proc", "size", "cores", "expected"),
    [
        (None, 200_000, 16, None),  # the bundled samples, tests and quickstart: this process
        (None, streams.PARALLEL_BYTES - 1, 16, None),
        (None, streams.PARALLEL_BYTES, 2, 2),
        (None, 2 * 10**9, 16, streams.MAX_PROCESSES),
        (None, 2 * 10**9, 1, None),
        (1, 2 * 10**9, 16, None),  # datasets would start a pool of one for num_proc=1
        (4, 300, 2, 4),  # as set
    ],
)
def test_num_proc_defaults_to_the_cores_for_a_large_split(
    monkeypatch, num_proc, size, cores, expected
) -> None:
    monkeypatch.setattr(streams, "usable_cores", lambda: cores)
    assert streams.processes(num_proc, size) == expected


def test_the_bundled_samples_are_prepared_in_this_process(monkeypatch) -> None:
    monkeypatch.setattr(streams, "usable_cores", lambda: 16)
    for corpus in (TinyStoriesCorpus(source="sample"), WritingPromptsCorpus(source="sample")):
        for rows in corpus.load().values():
            assert streams.processes(None, rows.data.nbytes) is None
