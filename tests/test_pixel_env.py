"""Tests for envs/pixels.py: state-vector envs played from their rendered frames."""

from __future__ import annotations

import importlib.util

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from envs.atari import make_atari
from envs.pixels import PixelObservationWrapper, make_pixel_env


class MovingSquareEnv(gym.Env):
    """A white square on a black 60x80 picture; action 1 moves it right, 0 left. The observation
    is only its x position: the picture exists only through render()."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(self, render_mode: str | None = None):
        self.render_mode = render_mode
        self.observation_space = spaces.Box(0.0, 70.0, (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.x = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = int(self.np_random.integers(20, 50))
        return np.array([self.x], np.float32), {}

    def step(self, action):
        self.x = int(np.clip(self.x + (4 if action == 1 else -4), 0, 70))
        return np.array([self.x], np.float32), 1.0, False, False, {}

    def render(self):
        picture = np.zeros((60, 80, 3), np.uint8)
        picture[25:35, self.x : self.x + 10] = 255
        return picture


MOVING_SQUARE = "test_pixels/MovingSquare-v0"
if MOVING_SQUARE not in gym.registry:
    gym.register(MOVING_SQUARE, entry_point=MovingSquareEnv, max_episode_steps=20)

needs_pygame = pytest.mark.skipif(
    importlib.util.find_spec("pygame") is None,
    reason="CartPole renders with pygame (gymnasium[classic-control]), which is not installed",
)
ENV_IDS = [MOVING_SQUARE, pytest.param("CartPole-v1", marks=needs_pygame)]


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_shape_dtype_and_stack_order(env_id: str):
    env = make_pixel_env(env_id)
    assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space
    assert all(np.array_equal(obs[0], frame) for frame in obs)  # the reset frame, repeated
    changed = 0
    for _ in range(6):  # few enough that pushing right does not yet topple CartPole's pole
        next_obs, *_ = env.step(1)
        assert next_obs in env.observation_space
        np.testing.assert_array_equal(next_obs[:-1], obs[1:])  # the stack shifts by one frame
        changed += not np.array_equal(next_obs[-1], obs[-1])
        obs = next_obs
    assert changed >= 5, "the picture should change as the env moves"
    color = make_pixel_env(env_id, screen_size=64, grayscale=False, frame_stack=2)
    assert color.reset(seed=0)[0].shape == (6, 64, 64)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_check_env_passes(env_id: str):
    check_env(make_pixel_env(env_id))


def test_frames_follow_the_state_and_episode_stats_are_recorded():
    env = make_pixel_env(MOVING_SQUARE)
    obs, _ = env.reset(seed=1)

    def square_column(frame: np.ndarray) -> float:
        """Brightness-weighted mean column of the newest frame."""
        columns = frame.sum(axis=0).astype(float)
        return float((columns * np.arange(frame.shape[1])).sum() / columns.sum())

    positions = [square_column(obs[-1])]
    for _ in range(3):
        obs, *_ = env.step(1)
        positions.append(square_column(obs[-1]))
    assert positions == sorted(positions) and positions[-1] > positions[0] + 5
    # MovingSquare gives 1 per step and is truncated after 20 steps.
    for _ in range(16):
        _, _, terminated, truncated, info = env.step(0)
        assert "episode" not in info
    _, _, terminated, truncated, info = env.step(0)
    assert truncated and not terminated
    assert info["episode"]["r"] == 20.0 and info["episode"]["l"] == 20


def test_needs_rgb_array_rendering():
    with pytest.raises(ValueError):
        PixelObservationWrapper(gym.make(MOVING_SQUARE))


def test_atari_from_pixels_equals_atari_from_observations():
    """For ALE the rendered frame is the observation, so both paths must agree exactly."""
    from_pixels = make_pixel_env("PongNoFrameskip-v4")
    from_obs = make_atari(
        "PongNoFrameskip-v4",
        noop_max=0,
        frame_skip=1,
        terminal_on_life_loss=False,
        fire_reset=False,
        clip_reward=False,
    )
    np.testing.assert_array_equal(from_pixels.reset(seed=5)[0], from_obs.reset(seed=5)[0])
    rng = np.random.default_rng(0)
    for _ in range(100):
        action = int(rng.integers(from_obs.action_space.n))
        pixel_step, obs_step = from_pixels.step(action), from_obs.step(action)
        np.testing.assert_array_equal(pixel_step[0], obs_step[0])
        assert pixel_step[1:4] == obs_step[1:4]
