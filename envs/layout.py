"""The toolkit's own observation layout: images channels first as uint8 (envs/images.py), Dict and
Tuple observations as one structured vector (envs/structured.py).

Training applies it inside each env (`with_layout`). A saved model applies it to observations a
user hands to `predict` (`ObservationLayout`), built from the space alone, through the very same
wrappers around an env that only has spaces: one definition of the layout, no second copy.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.images import ChannelsFirstUint8, channels_first_uint8
from envs.structured import MASK_KEY, FlattenStructuredObservation, flatten_structured

LAYOUT_WRAPPERS = (FlattenStructuredObservation, ChannelsFirstUint8)


def with_layout(env: gym.Env) -> gym.Env:
    """`env` observed in the layout the networks read."""
    return flatten_structured(channels_first_uint8(env))


def source_observation_space(env: gym.Env) -> gym.Space:
    """The observation space of `env` beneath the layout wrappers: what the game itself (after the
    user's `env.wrappers`) observes."""
    while isinstance(env, LAYOUT_WRAPPERS):
        env = env.env
    return env.observation_space


class _SpacesOnly(gym.Env):
    """An env that has spaces and nothing else: what the layout wrappers need to be built."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        self.observation_space, self.action_space = observation_space, action_space


class ObservationLayout:
    """Maps one observation of `source_space` to the network's layout, and reads a Dict
    observation's "action_mask" entry."""

    def __init__(self, source_space: gym.Space, action_space: gym.Space) -> None:
        self.source_space = source_space
        outer = with_layout(_SpacesOnly(source_space, action_space))
        self.space = outer.observation_space
        self.wrappers: list[gym.ObservationWrapper] = []  # innermost first
        while isinstance(outer, LAYOUT_WRAPPERS):
            self.wrappers.insert(0, outer)
            outer = outer.env

    def __call__(self, observation: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(observation in the network's layout, the action mask it carries or None)."""
        mask = None
        if isinstance(observation, dict) and MASK_KEY in observation:
            mask = np.asarray(observation[MASK_KEY], dtype=bool)
        for wrapper in self.wrappers:
            observation = wrapper.observation(observation)
        return np.asarray(observation), mask
