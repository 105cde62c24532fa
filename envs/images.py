"""Images in the layout the CNNs read: channels first (C, H, W), uint8.

Games store frames either way: Atari stacks and Procgen-like envs channels first, CarRacing,
MiniGrid's RGB and MinAtar height × width × channels; MinAtar's planes are booleans. As
Stable-Baselines3's VecTransposeImage does, an image is taken as channels-last when its smallest
side is the last one, and transposed once, in the env, so that storage and networks see one layout.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs


def is_image_space(space: gym.Space) -> bool:
    """A 3-D Box of uint8 (pixels) or bool (planes)."""
    return isinstance(space, spaces.Box) and len(space.shape) == 3 and space.dtype in (np.uint8, np.bool_)


def is_channels_last(space: gym.Space) -> bool:
    """An image whose smallest side is its last one (H, W, C)."""
    return is_image_space(space) and int(np.argmin(space.shape)) == 2 and space.shape[2] < space.shape[0]


class ChannelsFirstUint8(gym.ObservationWrapper, RecordConstructorArgs):
    """(H, W, C) → (C, H, W) where the image is channels-last; bool planes → uint8 0 / 255 (the
    CNNs scale by 1/255, so a set bit reads 1.0)."""

    def __init__(self, env: gym.Env) -> None:
        RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        self.transpose = is_channels_last(space)
        self.scale = 255 if space.dtype == np.bool_ else 1
        shape = (space.shape[2], space.shape[0], space.shape[1]) if self.transpose else space.shape
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)

    def observation(self, observation: Any) -> np.ndarray:
        frame = np.asarray(observation)
        if self.transpose:
            frame = np.transpose(frame, (2, 0, 1))
        return np.ascontiguousarray(frame.astype(np.uint8) * np.uint8(self.scale))


def channels_first_uint8(env: gym.Env) -> gym.Env:
    """`env` with ChannelsFirstUint8 where its observations are an image it would change."""
    space = env.observation_space
    if is_image_space(space) and (is_channels_last(space) or space.dtype == np.bool_):
        return ChannelsFirstUint8(env)
    return env
