"""The published study's figures and settings as `published.yaml` holds them, and where each
setting of a storygen run comes from: the published study (with its printed figure) or
storygen's choice (with its reason).

Figures stay strings, as printed ("0.3023", "124,439,808"), so no digit is lost or added; the
numbers the report compares against are parsed from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from storygen.compare.sources import ComparedRun
from storygen.errors import StorygenError

PUBLISHED_FILE = Path(__file__).with_name("published.yaml")
MISSING = object()  # a key the run's config does not have (a null value is None)


def printed_number(figure: str | None) -> float | None:
    """A printed figure as a number: "124,439,808" -> 124439808, "0.3023" -> 0.3023."""
    if figure is None:
        return None
    plain = figure.replace(",", "")
    return int(plain) if plain.isdigit() else float(plain)


@dataclass(frozen=True)
class PublishedRow:
    """One run of the published study, each figure as printed (None: not stated)."""

    run: str
    family: str
    """storygen's key for matching runs to this row (`gpt2`, `mistral`), not a printed figure"""
    dataset: str
    """storygen's key (`tinystories`, `writingprompts`); the GPT-2 run's is storygen's choice"""
    model: str
    method: str
    data: str | None
    trainable_params: str
    total_params: str
    trainable_share: str
    epochs: str
    batch: str | None
    train_loss: str | None
    train_loss_at: str | None
    val_loss: str | None
    val_loss_at: str | None
    rouge: dict[str, str] | None

    def number(self, name: str) -> float | None:
        """A figure as a number: `trainable_params`, `train_loss`, or a ROUGE type."""
        if name in (self.rouge or {}):
            return printed_number(self.rouge[name])
        return printed_number(getattr(self, name))


@dataclass(frozen=True)
class Setting:
    """One row of the settings table: a setting, where its value is read in a run's config,
    and its source."""

    setting: str
    keys: tuple[str, ...]
    published: str | None = None
    """the PublishedRow field that states it; a row where that field is None does not"""
    choice: str | dict[str, str] | None = None
    """why storygen picked its value where the published study does not state it (one text,
    or one per published run)"""
    detail: str | dict[str, str] | None = None
    """storygen's choice of what a stated figure leaves open, shown beside the quote (one
    text, or one per published run)"""
    join: str | None = None
    """join the keys' values with this (`2 x 4`) instead of naming each (`r=16, ...`)"""
    unset: str = "–"
    """shown where the run's config has none of the keys (GPT-2 has no LoRA)"""

    def value(self, run: ComparedRun) -> str:
        values = [(key, config_value(run, key)) for key in self.keys]
        present = [(key, value) for key, value in values if value is not MISSING]
        if not present:
            return self.unset
        if self.join is not None:
            return self.join.join(render(value) for _, value in present)
        if len(self.keys) == 1:
            return render(present[0][1])
        return ", ".join(f"{key_label(key)}={render(value)}" for key, value in present)

    def source(self, row: PublishedRow) -> str:
        stated = getattr(row, self.published) if self.published else None
        if stated is None:
            return f"storygen's choice: {for_run(self.choice, row)}"
        detail = for_run(self.detail, row)
        quote = f'published study: "{stated}"'
        return quote + (f"; storygen's choice: {detail}" if detail else "")

    def stated(self, row: PublishedRow) -> bool:
        return self.published is not None and getattr(row, self.published) is not None


@dataclass(frozen=True)
class Published:
    """The published study as `published.yaml` holds it."""

    source: str
    rouge_convention: str
    train_loss_kind: str
    does_not_state: tuple[str, ...]
    rows: tuple[PublishedRow, ...]
    settings: tuple[Setting, ...]


def load_published(path: Path = PUBLISHED_FILE) -> Published:
    data = OmegaConf.to_container(OmegaConf.load(path))
    rows = tuple(PublishedRow(**row) for row in data["runs"])
    settings = tuple(
        Setting(**(entry | {"keys": tuple(entry["keys"])})) for entry in data["settings"]
    )
    row_fields = {f.name for f in fields(PublishedRow)}
    for entry in settings:
        if entry.published is not None and entry.published not in row_fields:
            raise StorygenError(
                f"{path}: setting {entry.setting!r} is published as {entry.published!r}, "
                f"which is no field of a run; use one of {sorted(row_fields)}."
            )
        for row in rows:
            if entry.choice is None and (
                entry.published is None or not getattr(row, entry.published)
            ):
                raise StorygenError(
                    f"{path}: setting {entry.setting!r} is not stated for {row.run} and has "
                    "no `choice` saying why storygen picked its value."
                )
    return Published(
        source=data["source"],
        rouge_convention=data["rouge_convention"],
        train_loss_kind=data["train_loss_kind"],
        does_not_state=tuple(data["does_not_state"]),
        rows=rows,
        settings=settings,
    )


def for_run(text: str | dict[str, str] | None, row: PublishedRow) -> str | None:
    """A setting's text for one published run: the same for all, or the run's own."""
    return text.get(row.run) if isinstance(text, dict) else text


def config_value(run: ComparedRun, key: str) -> Any:
    """A value of the run's config; MISSING where the key is absent or does not resolve
    offline."""
    if run.config is None:
        return MISSING
    value = OmegaConf.select(run.config, key, default=MISSING, throw_on_resolution_failure=False)
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def render(value: Any) -> str:
    """A config value as the table shows it: null, a list in brackets, a string with its line
    breaks escaped (`Prompt: {prompt}\\nStory:\\n`)."""
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ", ".join(map(render, value)) + "]"
    if isinstance(value, str):
        return json.dumps(value)[1:-1] if "\n" in value else value
    return str(value)


def key_label(key: str) -> str:
    """`model.backbone.lora.r` -> `r`; `model.backbone.lora._target_` -> `lora`."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "_target_" else parts[-1]
