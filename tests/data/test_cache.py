"""Prepared splits are reused by a second run and rebuilt when anything that changes tokens does."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import shutil
import sys
from pathlib import Path

import huggingface_hub
import pytest

import storygen
import storygen.data.datamodule as datamodule_module
from storygen.data.cache import library_versions, resolve_hub_revision
from storygen.data.datamodule import StoryDataModule, preparing_code
from storygen.data.formatting import LAYOUT_VERSION
from storygen.data.tinystories import SAMPLE_FILES, TinyStoriesCorpus
from storygen.data.writingprompts import WritingPromptsCorpus
from storygen.models.loader import build_offline_gpt2_tokenizer, build_offline_mistral_tokenizer

TOKENIZER = build_offline_gpt2_tokenizer()
PACKAGE_DIR = str(Path(storygen.__file__).parent)


@pytest.fixture
def counted_tokenizing(monkeypatch) -> list[int]:
    calls: list[int] = []
    original = datamodule_module.tokenize_stories

    def counting(batch, **kwargs):
        calls.append(len(batch["prompt"]))
        return original(batch, **kwargs)

    monkeypatch.setattr(datamodule_module, "tokenize_stories", counting)
    return calls


@pytest.fixture
def corpus_files(tmp_path: Path) -> tuple[Path, Path]:
    train, valid = tmp_path / "train.txt", tmp_path / "valid.txt"
    shutil.copy(SAMPLE_FILES["train"], train)
    shutil.copy(SAMPLE_FILES["validation"], valid)
    return train, valid


def prepare(
    cache_dir: Path, files: tuple[Path, Path], tokenizer=TOKENIZER, prompt_sentences=1, **options
) -> StoryDataModule:
    corpus = TinyStoriesCorpus(
        source="files",
        train_file=str(files[0]),
        validation_file=str(files[1]),
        prompt_sentences=prompt_sentences,
    )
    datamodule = StoryDataModule(corpus, tokenizer, cache_dir=str(cache_dir), **options)
    datamodule.setup()
    return datamodule


def test_a_second_run_reuses_the_prepared_splits(tmp_path, corpus_files, counted_tokenizing):
    first = prepare(tmp_path / "cache", corpus_files)
    assert counted_tokenizing
    counted_tokenizing.clear()
    second = prepare(tmp_path / "cache", corpus_files)
    assert counted_tokenizing == []
    assert second.tokenized["train"]["input_ids"] == first.tokenized["train"]["input_ids"]
    assert second.story_prompts("test", 3) == first.story_prompts("test", 3)


@pytest.mark.parametrize(
    "change",
    [
        "max_length",
        "template",
        "masking",
        "tokenizer",
        "cleaning",
        "source_file",
        "max_train_samples",
        "max_eval_samples",
        "packing",
        "packing_run_on",
        "layout_version",
        "library_version",
    ],
)
def test_anything_that_changes_tokens_invalidates_the_cache(
    tmp_path, corpus_files, counted_tokenizing, monkeypatch, change
):
    prepare(tmp_path / "cache", corpus_files)
    counted_tokenizing.clear()
    kwargs: dict = {}
    if change == "max_length":
        kwargs["max_length"] = 64
    elif change == "template":
        kwargs["prompt_template"] = "Story: {prompt}"
    elif change == "masking":
        kwargs["train_on_prompt"] = False
    elif change == "tokenizer":
        other = build_offline_gpt2_tokenizer()
        other.add_tokens(["<scene>"])
        kwargs["tokenizer"] = other
    elif change == "cleaning":
        kwargs["prompt_sentences"] = 2
    elif change in ("max_train_samples", "max_eval_samples"):
        kwargs[change] = 10
    elif change == "packing":
        kwargs["packing"] = True
    elif change == "packing_run_on":
        prepare(tmp_path / "cache", corpus_files, packing=True)
        counted_tokenizing.clear()
        kwargs |= {"packing": True, "pack_whole_stories": False}
    elif change == "layout_version":
        monkeypatch.setattr(datamodule_module, "LAYOUT_VERSION", LAYOUT_VERSION + 1)
    elif change == "library_version":  # another tokenizers release may split text otherwise
        versions = library_versions() | {"tokenizers": "0.0.1"}
        monkeypatch.setattr(datamodule_module, "library_versions", lambda: versions)
    else:
        with corpus_files[0].open("a") as handle:
            handle.write("A new story begins here. It ends well.\n<|endoftext|>\n")
    rebuilt = prepare(tmp_path / "cache", corpus_files, **kwargs)
    assert counted_tokenizing, f"changing {change} reused a stale cache"
    assert len(list((tmp_path / "cache").iterdir())) == 2 + (change == "packing_run_on")
    if change == "source_file":
        assert len(rebuilt.tokenized["train"]) == 361


@pytest.mark.parametrize(
    "change", [{"clean": False}, {"max_story_words": 20}, {"revision": "v2"}, {}]
)
def test_writingprompts_cleaning_options_invalidate_the_cache(tmp_path, counted_tokenizing, change):
    def setup(**options) -> StoryDataModule:
        corpus = WritingPromptsCorpus(source="sample", **options)
        datamodule = StoryDataModule(corpus, TOKENIZER, cache_dir=str(tmp_path / "cache"))
        datamodule.setup()
        return datamodule

    first = setup()
    counted_tokenizing.clear()
    second = setup(**change)
    assert bool(counted_tokenizing) == bool(change)
    if "max_story_words" in change:
        words = [
            max(len(s.split()) for s in dm.stories["train"]["story"]) for dm in (first, second)
        ]
        assert words[1] <= 20 < words[0]
    if "clean" in change:
        assert second.stories["train"][0]["prompt"].startswith("[ ")
        assert not first.stories["train"][0]["prompt"].startswith("[")


def test_a_cached_run_gives_the_tokens_of_an_uncached_run(tmp_path, corpus_files):
    writes = prepare(tmp_path / "cache", corpus_files, packing=True)
    reads = prepare(tmp_path / "cache", corpus_files, packing=True)
    uncached = StoryDataModule(writes.corpus, TOKENIZER, packing=True, cache_dir=None)
    uncached.setup()
    for split in ("train", "validation", "test"):
        for datamodule in (writes, reads):
            assert datamodule.tokenized[split].to_dict() == uncached.tokenized[split].to_dict()
            assert datamodule.stories[split].to_dict() == uncached.stories[split].to_dict()
            assert datamodule.truncated == uncached.truncated


@pytest.mark.parametrize("dataset", ["tinystories", "writingprompts"])
def test_prepared_splits_are_memory_mapped_and_their_scratch_files_removed(tmp_path, dataset):
    """A full corpus must not sit in RAM: read, cleaned and tokenized splits are Arrow files
    on disk, the intermediate ones under a scratch folder that is gone once the result is
    saved."""
    corpus = (
        TinyStoriesCorpus(source="sample")
        if dataset == "tinystories"
        else WritingPromptsCorpus(source="sample")
    )
    read = corpus.load(work_dir=tmp_path / "work")
    for rows in read.values():
        assert rows.cache_files
        assert all(f["filename"].startswith(str(tmp_path / "work")) for f in rows.cache_files)
    cache = tmp_path / "cache"
    datamodule = StoryDataModule(corpus, TOKENIZER, cache_dir=str(cache))
    datamodule.setup()
    assert [path.name for path in cache.iterdir()] == [datamodule.cache_key()]
    for prepared in (datamodule.stories, datamodule.tokenized):
        for rows in prepared.values():
            assert rows.cache_files
            assert all(f["filename"].startswith(str(cache)) for f in rows.cache_files)


def test_the_real_mistral_tokenizer_gives_the_same_key_each_time_it_is_built() -> None:
    """Built from a temporary folder whose name differs per build: a key hashing that name
    would never let the next run read the cache."""
    keys = {
        StoryDataModule(
            WritingPromptsCorpus(source="sample"), build_offline_mistral_tokenizer(), cache_dir="x"
        ).cache_key()
        for _ in range(2)
    }
    assert len(keys) == 1


def test_a_hub_datasets_revision_is_part_of_the_key(tmp_path, monkeypatch):
    """Offline, the commit `main` points at is read from the hub cache; a given revision too."""
    hub_cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hub_cache))
    resolve_hub_revision.cache_clear()

    def key(revision=None) -> str:
        resolve_hub_revision.cache_clear()
        corpus = TinyStoriesCorpus(source="hub", revision=revision)
        return StoryDataModule(corpus, TOKENIZER, cache_dir=str(tmp_path)).cache_key()

    refs = hub_cache / "datasets--roneneldan--TinyStories" / "refs"
    unknown = key()
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40)
    at_a = key()
    (refs / "main").write_text("b" * 40)
    at_b = key()
    assert len({unknown, at_a, at_b, key("v1"), key("c" * 40)}) == 5
    assert TinyStoriesCorpus(source="hub").hub_revision() == "b" * 40
    assert TinyStoriesCorpus(source="sample").hub_revision() is None
    resolve_hub_revision.cache_clear()


def test_the_key_covers_the_versions_of_the_libraries_that_make_tokens() -> None:
    versions = library_versions()
    for name in ("transformers", "tokenizers", "sentencepiece", "datasets", "nltk"):
        assert versions[name] == importlib.metadata.version(name)


CORPUS_V1 = """
from dataclasses import dataclass
from datasets import Dataset

def clean_story(text):
    return text.strip()

@dataclass(frozen=True)
class ResearchCorpus:
    finish_train = None

    def source_files(self):
        return []

    def hub_revision(self):
        return None

    def load(
        self, streaming=False, num_proc=None, work_dir=None, train_openings=True,
        finish_train_later=False,
    ):
        rows = {"prompt": ["A fox.", "A cat."], "story": [" It ran.  ", " It sat.  "]}
        rows["story"] = [clean_story(story) for story in rows["story"]]
        return {split: Dataset.from_dict(rows) for split in ("train", "validation", "test")}
"""


def test_editing_the_cleaning_code_gives_the_next_run_the_new_text(tmp_path, monkeypatch):
    """The cache key hashes the source of the code that prepares the data."""
    module_dir = tmp_path / "code"
    module_dir.mkdir()
    (module_dir / "research_corpus.py").write_text(CORPUS_V1)
    monkeypatch.syspath_prepend(str(module_dir))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    import research_corpus

    def run() -> list[str]:
        datamodule = StoryDataModule(
            research_corpus.ResearchCorpus(), TOKENIZER, cache_dir=str(tmp_path / "cache")
        )
        datamodule.setup()
        return datamodule.stories["train"]["story"]

    assert run() == ["It ran.", "It sat."]
    edited = CORPUS_V1.replace("return text.strip()", "return text.strip().upper()")
    (module_dir / "research_corpus.py").write_text(edited)
    importlib.reload(research_corpus)
    assert run() == ["IT RAN.", "IT SAT."]
    sys.modules.pop("research_corpus")


# Functions of storygen that run while preparing but cannot change what is prepared.
NOT_CHANGING_THE_DATA = {
    "StoryDataModule._check_dropped",
    "StoryCorpus.hub_revision",
}


def storygen_code_run_by(function) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()

    def profile(frame, event, arg) -> None:
        code = frame.f_code
        if event == "call" and code.co_filename.startswith(PACKAGE_DIR):
            seen.add((code.co_filename, getattr(code, "co_qualname", code.co_name)))

    sys.setprofile(profile)
    try:
        function()
    finally:
        sys.setprofile(None)
    return seen


@pytest.mark.parametrize(
    "corpus",
    [TinyStoriesCorpus(source="sample"), WritingPromptsCorpus(source="sample")],
    ids=["tinystories", "writingprompts"],
)
def test_every_line_of_code_that_prepares_the_data_is_in_the_key(corpus, tmp_path) -> None:
    """A new helper module or datamodule step joins the key, or this test names it."""
    datamodule = StoryDataModule(corpus, TOKENIZER, packing=True, max_length=128)
    keyed_files, keyed_functions = set(), set()
    for code in preparing_code(corpus):
        if inspect.ismodule(code):
            keyed_files.add(inspect.getsourcefile(code))
        else:
            keyed_functions.add(code.__qualname__)
    run = storygen_code_run_by(lambda: datamodule._prepare(tmp_path))
    assert any(file.endswith("formatting.py") for file, _ in run)
    unkeyed = {
        (Path(file).name, name)
        for file, name in run
        if file not in keyed_files
        and not any(name == f or name.startswith(f + ".") for f in keyed_functions)
        and name not in NOT_CHANGING_THE_DATA
    }
    assert unkeyed == set()
