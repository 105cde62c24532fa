"""Token sequences of different lengths as the rectangular tensors a transformer reads."""

from __future__ import annotations

from typing import Sequence

import torch

from envs.token_tasks import PAD_ID


def pad_rows(rows: Sequence[Sequence[int]], width: int | None = None) -> torch.Tensor:
    """Right-padded long tensor [B, width] of `rows` (width: the longest row's length)."""
    width = max(len(row) for row in rows) if width is None else width
    tokens = torch.full((len(rows), width), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
    return tokens


def span_mask(rows: Sequence[Sequence[int]], starts: Sequence[int], width: int) -> torch.Tensor:
    """Bool [B, width], True at positions starts[i] ≤ t < len(rows[i]) (e.g. a row's completion)."""
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, (row, start) in enumerate(zip(rows, starts)):
        mask[i, start : len(row)] = True
    return mask
