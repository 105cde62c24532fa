"""Dict and Tuple observations (MiniGrid, most real games) as one flat vector that remembers its
structure, so that storage, vector envs and the PPO core see a plain Box and a network can cut
the vector back into its entries (agents/networks/multi_input.py).

The vector is gymnasium.spaces.flatten's, as float32: Box entries flattened (images too, in their
own layout), Discrete one-hot, MultiDiscrete one-hot per entry, MultiBinary as 0/1. A Dict entry
named "action_mask" is not observed: it moves to info["action_mask"], where the trainer reads masks.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs

from envs.options import ConfigError

MASK_KEY = "action_mask"
LEAVES = (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)


def leaves(space: gym.Space, path: str = "observation") -> list[tuple[str, gym.Space]]:
    """(path, space) of every leaf in gymnasium.spaces.flatten's order; ConfigError naming the
    first leaf that cannot be flattened (Text, Graph, Sequence...) and where it is."""
    if isinstance(space, spaces.Dict):
        return [leaf for key, sub in space.spaces.items() for leaf in leaves(sub, f"{path}[{key!r}]")]
    if isinstance(space, spaces.Tuple):
        return [leaf for i, sub in enumerate(space.spaces) for leaf in leaves(sub, f"{path}[{i}]")]
    if not isinstance(space, LEAVES):
        raise ConfigError(
            f"observation space {space} at {path} is not supported (Box, Discrete, MultiDiscrete, "
            "MultiBinary, and Dict / Tuple of them are)"
        )
    return [(path, space)]


class StructuredBox(spaces.Box):
    """The float32 vector of a Dict or Tuple observation; `structure` is the original space."""

    def __init__(self, structure: spaces.Dict | spaces.Tuple) -> None:
        leaves(structure)  # refuses what cannot be flattened
        flat = spaces.flatten_space(structure)
        super().__init__(flat.low.astype(np.float32), flat.high.astype(np.float32), dtype=np.float32)
        self.structure = structure


class FlattenStructuredObservation(gym.ObservationWrapper, RecordConstructorArgs):
    """Dict / Tuple observation → StructuredBox vector (see the module docstring)."""

    def __init__(self, env: gym.Env) -> None:
        RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        self.masked = isinstance(space, spaces.Dict) and MASK_KEY in space.spaces
        if self.masked:
            space = spaces.Dict({k: v for k, v in space.spaces.items() if k != MASK_KEY})
        self.structure = space
        self.observation_space = StructuredBox(space)

    def _split(self, observation: Any, info: dict) -> tuple[np.ndarray, dict]:
        if self.masked:
            info = {**info, MASK_KEY: np.asarray(observation[MASK_KEY], dtype=bool)}
            observation = {k: v for k, v in observation.items() if k != MASK_KEY}
        return spaces.flatten(self.structure, observation).astype(np.float32), info

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        observation, info = self.env.reset(**kwargs)
        return self._split(observation, info)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        observation, reward, terminated, truncated, info = self.env.step(action)
        observation, info = self._split(observation, info)
        return observation, reward, terminated, truncated, info

    def observation(self, observation: Any) -> np.ndarray:  # for callers of gym.ObservationWrapper's API
        return self._split(observation, {})[0]


def flatten_structured(env: gym.Env) -> gym.Env:
    """`env` with FlattenStructuredObservation where it observes a Dict or Tuple."""
    if isinstance(env.observation_space, (spaces.Dict, spaces.Tuple)):
        return FlattenStructuredObservation(env)
    return env
