"""env.vector_backend: native (envs/cartpole_vector.py) against gymnasium's SyncVectorEnv of
CartPole-v1: the same observations, rewards, episode ends, final observations and episode
statistics, step for step, and the same rollouts and weights in training."""

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode

from agents.config import ConfigError, load_config
from agents.run.checkpoint import load_checkpoint
from agents.run.trainer import train
from envs.cartpole_vector import CartPoleVectorEnv, is_gymnasiums_cartpole
from envs.vector import make_vector_env, resolved_backend
from tests.test_overlap import play


def gymnasium_cartpoles(num_envs: int) -> gym.vector.VectorEnv:
    def make() -> gym.Env:
        return gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))

    return gym.vector.SyncVectorEnv([make] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)


def assert_same_step(expected: tuple, got: tuple) -> None:
    obs, reward, terminated, truncated, infos = expected
    np.testing.assert_array_equal(got[0], obs)
    assert got[0].dtype == obs.dtype == np.float32
    np.testing.assert_array_equal(got[1], reward)
    np.testing.assert_array_equal(got[2], terminated)
    np.testing.assert_array_equal(got[3], truncated)
    got_infos = got[4]
    assert set(got_infos) == set(infos)
    if not infos:
        return
    np.testing.assert_array_equal(got_infos["_final_obs"], infos["_final_obs"])
    for i in np.flatnonzero(infos["_final_obs"]):
        np.testing.assert_array_equal(got_infos["final_obs"][i], infos["final_obs"][i])
    episode, got_episode = infos["final_info"]["episode"], got_infos["final_info"]["episode"]
    np.testing.assert_array_equal(got_infos["final_info"]["_episode"], infos["final_info"]["_episode"])
    for key in ("r", "l", "_r", "_l", "_t"):
        np.testing.assert_array_equal(got_episode[key], episode[key])
        assert got_episode[key].dtype == episode[key].dtype


def test_steps_like_gymnasiums_sync_vector_env_through_falls_and_time_limits():
    """Random actions make short episodes (falls); a policy that pushes against the pole's lean
    keeps it up until the 500-step time limit, which truncates."""
    ours, theirs = CartPoleVectorEnv(5), gymnasium_cartpoles(5)
    expected = theirs.reset(seed=3)
    got = ours.reset(seed=3)
    np.testing.assert_array_equal(got[0], expected[0])
    rng = np.random.default_rng(0)
    ends = {"terminated": 0, "truncated": 0}
    obs = expected[0]
    for step in range(3000):
        balancing = step >= 1000
        actions = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64) if balancing else rng.integers(0, 2, 5)
        expected, got = theirs.step(actions), ours.step(actions)
        assert_same_step(expected, got)
        obs = expected[0]
        ends["terminated"] += int(expected[2].sum())
        ends["truncated"] += int(expected[3].sum())
    assert ends["terminated"] > 50 and ends["truncated"] >= 5, ends
    # A later reset without a seed goes on with each env's generator, as gymnasium's does.
    np.testing.assert_array_equal(ours.reset()[0], theirs.reset()[0])


def test_a_rollout_equals_the_gymnasium_backends():
    """Through the collector (tests/test_overlap.py's `play`, two segments): the same rows,
    episodes and last observations."""
    expected_rows, expected_episodes, expected_obs = play("CartPole-v1", "sync", 6, num_steps=60)
    rows, episodes, obs = play("CartPole-v1", "sync", 6, num_steps=60, vector_backend="native")
    for expected, got in zip(expected_rows, rows):
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert episodes == expected_episodes and len(episodes) > 0
    np.testing.assert_array_equal(obs, expected_obs)


def test_refuses_bad_actions_and_steps_before_reset():
    envs = CartPoleVectorEnv(2)
    with pytest.raises(RuntimeError, match="reset"):
        envs.step(np.array([0, 1]))
    envs.reset(seed=0)
    for actions in (np.array([0, 2]), np.array([1]), np.array([0, 1, 1])):
        with pytest.raises(ValueError, match="each 0 or 1"):
            envs.step(actions)


@pytest.mark.parametrize("overrides, message", [
    (["env_id=Acrobot-v1"], "runs gymnasium's CartPole-v1 only"),
    (["env.kwargs={max_episode_steps: 200}"], "drop env.kwargs"),
    (["env.vectorization=async"], "drop env.vectorization: async"),
    (["env.num_workers=2"], "steps its envs itself"),
])
def test_refuses_what_it_cannot_play(overrides, message):
    with pytest.raises(ConfigError, match=message):  # when the config loads or when the envs are made
        config = load_config("configs/cartpole.yaml", ["env.vector_backend=native", *overrides])
        make_vector_env(config).close()


def test_normalisation_wraps_it_like_any_vector_env():
    config = load_config("configs/cartpole.yaml", ["env.vector_backend=native", "env.normalize_obs=true"])
    envs = make_vector_env(config)
    obs, _ = envs.reset(seed=0)
    for _ in range(20):
        obs, *_ = envs.step(np.zeros(config.env.num_envs, dtype=np.int64))
    assert type(envs).__name__ == "NormalizeVectorEnv" and np.abs(obs).max() <= 10


def test_training_on_it_gives_the_gymnasium_backends_weights(tmp_path):
    """Four updates of configs/cartpole.yaml on each backend: bitwise the same network."""
    weights = {}
    for backend in ("gymnasium", "native"):
        config = load_config("configs/cartpole.yaml", [
            f"env.vector_backend={backend}", "total_timesteps=1024", "torch_threads=1",
            f"run_dir={tmp_path / backend}",
        ])
        train(config, config_name="cartpole", progress=False)
        weights[backend] = load_checkpoint(tmp_path / backend / "checkpoints" / "final.pt")["model"]
    assert weights["native"].keys() == weights["gymnasium"].keys()
    for name, expected in weights["gymnasium"].items():
        assert torch.equal(weights["native"][name], expected), name


@pytest.mark.parametrize("overrides, backend", [
    ([], "native"),
    (["env.normalize_obs=true"], "native"),
    (["env.kwargs={sutton_barto_reward: true}"], "gymnasium"),
    (["env.vectorization=async"], "gymnasium"),
    (["env.num_workers=2"], "gymnasium"),
    (["env.pixels=true"], "gymnasium"),
    (["env_id=Acrobot-v1"], "gymnasium"),
    (["env.vector_backend=gymnasium"], "gymnasium"),
])
def test_auto_picks_native_only_for_the_plain_game(overrides, backend):
    config = load_config("configs/cartpole.yaml", overrides)
    assert config.env.vector_backend in ("auto", "gymnasium")
    assert resolved_backend(config.env_id, config.env) == backend


def test_a_re_registered_cartpole_is_not_native():
    spec = gym.spec("CartPole-v1")
    assert is_gymnasiums_cartpole(spec)
    assert not is_gymnasiums_cartpole(dataclasses.replace(spec, max_episode_steps=200))
    assert not is_gymnasiums_cartpole(dataclasses.replace(spec, entry_point="mygame:CartPole"))
    assert not is_gymnasiums_cartpole(dataclasses.replace(spec, kwargs={"sutton_barto_reward": True}))
