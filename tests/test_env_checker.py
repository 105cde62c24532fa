"""gymnasium's env checker on every env the toolkit makes for training, as make_single_env
builds it (wrappers included): the token games, images made channels-first, Dict observations
made one vector, a MiniGrid game through env.wrappers, normalised replays, and a Box-action game."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import tests.space_envs  # noqa: F401  (registers the tests/ ids)
from agents.config import config_from_dict
from envs.normalize import NormalizeObservation
from envs.vector import make_single_env

ENVS = {
    "TokenGen/DigitSort-v0": {},
    "TokenGen/Sentiment-v0": {},
    "tests/ColourHWC-v0": {},
    "tests/ColourPlanes-v0": {},
    "tests/DictHint-v0": {},
    "MiniGrid-DoorKey-5x5-v0": {
        "imports": ["minigrid"],
        "wrappers": [{"gymnasium.wrappers:FilterObservation": {"filter_keys": ["image", "direction"]}}],
    },
    "LunarLanderContinuous-v3": {},
    "Taxi-v4": {},
}


@pytest.fixture(autouse=True)
def _no_episode_clock(monkeypatch):
    """RecordEpisodeStatistics puts wall-clock seconds into the last step's info, which the
    checker's same-seed comparison would call non-determinism; everything else stays."""
    monkeypatch.setattr(gym.wrappers, "RecordEpisodeStatistics", lambda env: env)


@pytest.mark.parametrize("env_id", list(ENVS))
def test_env_passes_gymnasiums_checker(env_id):
    options = config_from_dict({"env_id": env_id, "env": ENVS[env_id]}).env
    env = make_single_env(env_id, options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "the environment is different from the unwrapped version"
        check_env(env, skip_render_check=True)
    env.close()


def test_normalised_replay_env_passes_gymnasiums_checker():
    options = config_from_dict({"env_id": "Pendulum-v1"}).env
    statistics = {"mean": [0.1, -0.2, 0.3], "var": [0.5, 0.5, 4.0], "count": 100.0}
    env = NormalizeObservation(make_single_env("Pendulum-v1", options), statistics)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and np.all(np.abs(obs) <= 10)
