"""Any env that renders `rgb_array`, played from pixels (e.g. CartPole-v1 from its picture)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs

from envs.atari_wrappers import FrameStackWrapper, WarpFrameWrapper


class PixelObservationWrapper(gym.ObservationWrapper[np.ndarray, Any, Any], RecordConstructorArgs):
    """Replace the observation by the env's rendered RGB frame, shape (H, W, 3), uint8.

    Lets a pixel agent (CNN policy) train on envs whose observations are state vectors. The env
    must be made with render_mode="rgb_array". The frame size is found by one reset and render
    at construction, because Gymnasium only promises render() after reset().
    """

    def __init__(self, env: gym.Env) -> None:
        RecordConstructorArgs.__init__(self)
        gym.ObservationWrapper.__init__(self, env)
        if env.render_mode != "rgb_array":
            raise ValueError(
                f"PixelObservationWrapper needs render_mode='rgb_array', got {env.render_mode!r}"
            )
        env.reset()
        frame = np.asarray(env.render())
        if frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected an RGB frame (H, W, 3) from render(), got shape {frame.shape}")
        self.observation_space = spaces.Box(low=0, high=255, shape=frame.shape, dtype=np.uint8)
        # Observations come from rgb_array rendering, so that is the only mode this env supports.
        self.metadata = {**env.metadata, "render_modes": ["rgb_array"]}

    def observation(self, observation: Any) -> np.ndarray:
        # Copy: some envs hand out the same render buffer every time.
        return np.array(self.env.render(), dtype=np.uint8, copy=True)


def make_pixel_env(
    env_id: str, screen_size: int = 84, grayscale: bool = True, frame_stack: int = 4, **make_kwargs
) -> gym.Env:
    """Make `env_id` observed through its rendered frames, warped and stacked like Atari frames.

    Observations are uint8 of shape (frame_stack, screen_size, screen_size) (times 3 channels if
    not grayscale), newest frame last. Rewards and episode ends are the env's own.
    info["episode"] comes from RecordEpisodeStatistics directly on the raw env. `make_kwargs` go
    to gymnasium.make.
    """
    env = gym.make(env_id, render_mode="rgb_array", **make_kwargs)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    env = PixelObservationWrapper(env)
    env = WarpFrameWrapper(env, width=screen_size, height=screen_size, grayscale=grayscale)
    env = FrameStackWrapper(env, num_stack=frame_stack)
    return env
