"""The info dicts of several vector envs joined into that of one vector env of all their envs."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


def merge_infos(parts: Sequence[tuple[dict[str, Any], int]]) -> dict[str, Any]:
    """The info dict of one vector env of sum(n) envs from those of vector envs of n envs each
    (gymnasium's layout: key → array over envs, "_key" → bool mask of the envs that set it; nested
    dicts alike). An env that did not set a key gets a zero (None for objects) and False."""
    merged: dict[str, Any] = {}
    keys = list(dict.fromkeys(key for info, _ in parts for key in info))
    for key in keys:
        present = [info[key] for info, _ in parts if key in info]
        if isinstance(present[0], dict):
            merged[key] = merge_infos([(info.get(key, {}), n) for info, n in parts])
            continue
        like = np.asarray(present[0])
        filler = (lambda n: np.full(n, None, dtype=object)) if like.dtype == object else (
            lambda n: np.zeros((n, *like.shape[1:]), dtype=like.dtype)
        )
        merged[key] = np.concatenate(
            [np.asarray(info[key]) if key in info else filler(n) for info, n in parts]
        )
    return merged
