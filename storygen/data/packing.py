"""Packing: several tokenized stories per row, so a batch is story tokens rather than padding.

Each story keeps its own `position_ids` (0, 1, 2, ... from its first token). Given
`position_ids` and no attention mask, transformers' attention masks (eager and sdpa; flash
attention only in a batch of one row) keep the stories of a row apart, and absolute position
embeddings see the same positions as unpacked; `storygen.run.checks.check_packing_isolation`
verifies this for the model at hand. The first label of each story is masked so the end of
one story is never trained to predict the start of the next; with that, a packed row's loss
equals the loss of its stories trained one by one.
"""

from __future__ import annotations

import bisect

from storygen.data.formatting import IGNORE_INDEX


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Indices of `lengths` grouped into bins of at most `capacity`, longest first, each into
    the fullest bin it still fits (few bins, little room left over); stories are never split.
    """
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin number), sorted
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        length = lengths[index]
        slot = bisect.bisect_left(free, (length, -1))
        if slot == len(free):
            bins.append([index])
            room, number = capacity - length, len(bins) - 1
        else:
            room, number = free.pop(slot)
            bins[number].append(index)
            room -= length
        if room > 0:
            bisect.insort(free, (room, number))
    return bins


def pack_stories(
    batch: dict[str, list[list[int]]], max_length: int, whole_stories: bool = True
) -> dict[str, list[list[int]]]:
    """Batched `datasets.map` function: rows of at most `max_length` tokens, with position_ids.

    `whole_stories` bins stories by best fit and never splits one. Otherwise stories run on
    from row to row (concatenate and chunk): every row is full, and a story that does not
    fit continues in the next row at the positions it had, without its opening as context.
    Packing works within each `datasets.map` batch, so it streams over any corpus size.
    """
    pieces = [_story_piece(batch, index) for index in range(len(batch["input_ids"]))]
    if whole_stories:
        lengths = [len(piece["input_ids"]) for piece in pieces]
        rows = [
            [pieces[i] for i in members] for members in best_fit_decreasing(lengths, max_length)
        ]
    else:
        rows = _chunk(pieces, max_length)
    packed: dict[str, list[list[int]]] = {"input_ids": [], "labels": [], "position_ids": []}
    for row in rows:
        for key, values in packed.items():
            values.append([token for piece in row for token in piece[key]])
    return packed


def _story_piece(batch: dict[str, list[list[int]]], index: int) -> dict[str, list[int]]:
    """One story with its positions; its first label is masked so the story before it in the
    row does not learn to predict it."""
    labels = list(batch["labels"][index])
    labels[0] = IGNORE_INDEX
    ids = batch["input_ids"][index]
    return {"input_ids": ids, "labels": labels, "position_ids": list(range(len(ids)))}


def _chunk(pieces: list[dict[str, list[int]]], max_length: int) -> list[list[dict]]:
    rows, row, room = [], [], max_length
    for piece in pieces:
        start = 0
        while start < len(piece["input_ids"]):
            take = min(room, len(piece["input_ids"]) - start)
            row.append({key: values[start : start + take] for key, values in piece.items()})
            start, room = start + take, room - take
            if room == 0:
                rows.append(row)
                row, room = [], max_length
    if row:
        rows.append(row)
    return rows
