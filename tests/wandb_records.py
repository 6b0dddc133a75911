"""Read an offline W&B run (`run-*.wandb`) back, so tests check logged values, not key names.

wandb has no public reader. The file is a LevelDB-style log: a 7-byte header (`:W&B`, magic,
version), then 32 KiB blocks of chunks, each with a 7-byte header (crc32, length, type); a
record too long for its block is split FIRST / MIDDLE... / LAST. Records are protobuf
`wandb_internal_pb2.Record`s.
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from wandb.proto import wandb_internal_pb2

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path, timeout_s: float = 60) -> list[wandb_internal_pb2.Record]:
    """The records of a finished run. W&B's service process writes the file, and it may still
    be writing the last ones when `wandb.finish()` has returned in a run trained in-process:
    read until the run's exit record is there."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = list(_written_records(path))
        if any(record.WhichOneof("record_type") == "exit" for record in records):
            return records
        assert time.monotonic() < deadline, f"{path} has no exit record: the run did not finish"
        time.sleep(0.2)


def _written_records(path: Path) -> Iterator[wandb_internal_pb2.Record]:
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    position, pending = HEADER, b""
    while position + HEADER <= len(data):
        left = BLOCK - position % BLOCK
        if left < HEADER:  # a block's tail too short for a chunk header is padding
            position += left
            continue
        checksum, length, kind = struct.unpack("<IHB", data[position : position + HEADER])
        if kind == 0 and length == 0:  # zero fill at the end of a block
            position += left
            continue
        if position + HEADER + length > len(data):
            return  # a chunk the writer has not finished
        chunk = data[position + HEADER : position + HEADER + length]
        assert zlib.crc32(bytes([kind]) + chunk) == checksum, f"bad chunk at {position}"
        position += HEADER + length
        if kind in (FIRST, MIDDLE):
            pending = chunk if kind == FIRST else pending + chunk
            continue
        record = wandb_internal_pb2.Record()
        record.ParseFromString(pending + chunk if kind == LAST else chunk)
        pending = b""
        yield record


def wandb_history(path: Path) -> list[dict]:
    """Every history row the run logged, as {key: value}."""
    rows = []
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return rows


def wandb_config(path: Path) -> dict:
    """The run's config as W&B stored it (the last value of each key)."""
    config = {}
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "config":
            for item in record.config.update:
                config[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return config


def wandb_summary(path: Path) -> dict:
    """The run's summary as W&B's API gives it: each key's latest value (a dict {min, last}
    for a metric defined with a summary; a table's or histogram's fields nested under its key,
    which the file stores one by one under a nested key)."""
    summary: dict = {}
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "summary":
            for item in record.summary.update:
                *parents, name = [item.key] if item.key else list(item.nested_key)
                node = summary
                for parent in parents:
                    node = node.setdefault(parent, {})
                node[name] = json.loads(item.value_json)
    return summary
