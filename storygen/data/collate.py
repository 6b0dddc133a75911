"""Batching tokenized stories for causal-LM training."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from storygen.data.formatting import IGNORE_INDEX


@dataclass(frozen=True)
class PromptMaskingCollator:
    """Right-pad a list of examples; padding is masked by length, never by token id.

    >>> PromptMaskingCollator(pad_token_id=0)([
    ...     {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
    ...     {"input_ids": [8, 9], "labels": [8, 9]},
    ... ])
    {'input_ids': tensor([[5, 6, 7], [8, 9, 0]]),
     'attention_mask': tensor([[1, 1, 1], [1, 1, 0]]),
     'labels': tensor([[-100, 6, 7], [8, 9, -100]])}

    GPT-2 pads with its EOS id, so masking by id would also drop the real EOS labels.

    Packed rows (see `storygen.data.packing`) also get `position_ids`; their padding becomes
    one more "story" of its own (positions 0, 1, ...) that nothing attends to or learns.
    """

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, examples: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(example["input_ids"]) for example in examples)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        packed = "position_ids" in examples[0]
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        position_ids = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            length = len(example["input_ids"])
            input_ids[row, :length] = torch.tensor(example["input_ids"])
            labels[row, :length] = torch.tensor(example["labels"])
            attention_mask[row, :length] = 1
            if packed:
                position_ids[row, :length] = torch.tensor(example["position_ids"])
                position_ids[row, length:] = torch.arange(width - length)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        return batch | {"position_ids": position_ids} if packed else batch
