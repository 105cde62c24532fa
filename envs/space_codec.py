"""Gymnasium spaces as plain data (dicts of lists, numbers and strings), and back.

A checkpoint is read with torch.load(weights_only=True), which refuses pickled objects, so the
spaces a model was trained on are stored in this form. With them a saved model rebuilds its network
and predicts without making its env (as Stable-Baselines3 stores its spaces with a model).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.structured import StructuredBox


def _bound(values: np.ndarray) -> Any:
    """A Box bound as one number when it is the same everywhere (an 84×84×4 frame's 0 and 255),
    else as nested lists."""
    flat = values.reshape(-1)
    return flat[0].item() if flat.size and (flat == flat[0]).all() else values.tolist()


def space_to_dict(space: gym.Space) -> dict[str, Any]:
    """The plain-data form of a Box, Discrete, MultiDiscrete, MultiBinary, Dict, Tuple or
    StructuredBox space; ValueError for any other."""
    if isinstance(space, StructuredBox):  # before Box: it is one, plus the structure it flattens
        return {"type": "StructuredBox", "structure": space_to_dict(space.structure)}
    if isinstance(space, spaces.Box):
        return {
            "type": "Box",
            "low": _bound(space.low),
            "high": _bound(space.high),
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": space.nvec.tolist(), "start": space.start.tolist()}
    if isinstance(space, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": np.asarray(space.n).tolist()}
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": [[key, space_to_dict(sub)] for key, sub in space.spaces.items()]}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "spaces": [space_to_dict(sub) for sub in space.spaces]}
    raise ValueError(f"cannot store space {space}")


def space_from_dict(data: dict[str, Any]) -> gym.Space:
    """The inverse of space_to_dict."""
    kind = data["type"]
    if kind == "StructuredBox":
        return StructuredBox(space_from_dict(data["structure"]))
    if kind == "Box":
        dtype = np.dtype(data["dtype"])
        low = np.broadcast_to(np.asarray(data["low"], dtype=dtype), data["shape"])
        high = np.broadcast_to(np.asarray(data["high"], dtype=dtype), data["shape"])
        return spaces.Box(low, high, tuple(data["shape"]), dtype)
    if kind == "Discrete":
        return spaces.Discrete(data["n"], start=data["start"])
    if kind == "MultiDiscrete":
        return spaces.MultiDiscrete(data["nvec"], start=data["start"])
    if kind == "MultiBinary":
        return spaces.MultiBinary(data["n"])
    if kind == "Dict":
        # Pairs, not a dict: gymnasium sorts a dict's keys, and the stored order is the env's.
        return spaces.Dict([(key, space_from_dict(sub)) for key, sub in data["spaces"]])
    if kind == "Tuple":
        return spaces.Tuple([space_from_dict(sub) for sub in data["spaces"]])
    raise ValueError(f"unknown space type {kind!r}")
