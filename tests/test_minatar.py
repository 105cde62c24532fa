"""MinAtar games (envs/minatar.py): gymnasium's env checker, the planes as the small CNN reads them,
our own rendering (no seaborn), and a shipped config that trains and replays with a video."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from agents.config import load_config
from agents.networks.cnn import CNNActorCritic
from agents.run.evaluation import play_episodes
from agents.run.trainer import train
from envs.minatar import CELL, GAMES
from envs.vector import make_single_env

IDS = [f"MinAtar/{name}-v1" for name in GAMES]


@pytest.mark.parametrize("env_id", IDS)
def test_each_game_passes_the_env_checker_and_renders_its_planes(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    planes, _ = env.reset(seed=3)
    frame = env.render()
    assert frame.shape == (10 * CELL, 10 * CELL, 3) and frame.dtype == np.uint8
    lit = planes.any(axis=2)  # a cell with any plane set is drawn, an empty one stays black
    cells = frame[::CELL, ::CELL].any(axis=2)
    assert (cells == lit).all()


def test_the_training_env_feeds_the_small_cnn_planes_channels_first(tmp_path):
    config = load_config("configs/minatar_breakout.yaml", [f"run_dir={tmp_path / 'run'}"])
    env = make_single_env(config.env_id, config.env)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 10, 10) and obs.dtype == np.uint8 and set(np.unique(obs)) <= {0, 255}


def test_a_shipped_config_trains_and_replays_with_a_video(tmp_path, keep_torch_threads):
    config = load_config(
        "configs/minatar_breakout.yaml",
        [f"run_dir={tmp_path / 'run'}", "total_timesteps=2048", "env.num_envs=8", "ppo.num_steps=64"],
    )
    result = train(config, progress=None)
    assert isinstance(result.agent, CNNActorCritic) and result.global_step == 2048
    played = play_episodes(result.agent, config, episodes=1, seed=0, deterministic=False,
                           video_dir=tmp_path / "videos", max_steps=200)
    assert played[0]["frames"] >= 2 and (tmp_path / "videos" / "episode_000.mp4").is_file()
