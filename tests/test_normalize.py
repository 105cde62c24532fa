"""Observation and reward normalisation: the same numbers as Stable-Baselines3's VecNormalize,
statistics that survive a checkpoint bit for bit, and replays that use them frozen."""

from __future__ import annotations

import shutil

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from agents.config import config_from_dict
from agents.run.checkpoint import load_agent, load_checkpoint
from agents.run.collectors import SegmentCollector
from agents.run.evaluation import play_episodes
from agents.run.resume import env_reset_seed, find_resume_point
from agents.run.trainer import train
from envs.normalize import NormalizeVectorEnv, RunningMeanStd

NORMALIZED = {
    "env_id": "CartPole-v1", "seed": 4, "total_timesteps": 6 * 64, "torch_threads": 1,
    "checkpoint_interval": 3, "keep_checkpoints": 0,
    "env": {"num_envs": 2, "normalize_obs": True, "normalize_reward": True},
    "ppo": {"num_steps": 32, "num_minibatches": 2, "update_epochs": 2, "gamma": 0.9},
}


pytestmark = pytest.mark.usefixtures("keep_torch_threads")  # see tests/conftest.py


def test_running_mean_and_variance_of_batches_equal_those_of_everything():
    data = np.random.default_rng(0).normal(3.0, 2.0, size=(50, 3))
    rms = RunningMeanStd((3,))
    for batch in np.split(data, 5):
        rms.update(batch)
    # The prior (mean 0, var 1, count 1e-4) weighs 1e-4 of 50 samples.
    assert np.allclose(rms.mean, data.mean(0), rtol=1e-5) and np.allclose(rms.var, data.var(0), rtol=1e-4)


def test_observations_and_rewards_match_stable_baselines3_vecnormalize():
    gamma, steps, num_envs = 0.9, 300, 3
    ours = NormalizeVectorEnv(
        gym.vector.SyncVectorEnv(
            [lambda: gym.make("CartPole-v1")] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP
        ),
        observations=True, rewards=True, gamma=gamma,
    )
    theirs = DummyVecEnv([lambda: gym.make("CartPole-v1")] * num_envs)
    theirs.seed(7)
    theirs = VecNormalize(theirs, norm_obs=True, norm_reward=True, gamma=gamma)
    our_obs, _ = ours.reset(seed=7)
    assert np.allclose(our_obs, theirs.reset(), atol=1e-6)
    actions = np.random.default_rng(1).integers(2, size=(steps, num_envs))
    ended = 0
    for action in actions:
        our_obs, our_reward, terminated, truncated, infos = ours.step(action)
        their_obs, their_reward, dones, their_infos = theirs.step(action)
        assert np.array_equal(terminated | truncated, dones)
        assert np.allclose(our_obs, their_obs, atol=1e-5) and np.allclose(our_reward, their_reward, atol=1e-5)
        for i in np.flatnonzero(dones):
            assert np.allclose(infos["final_obs"][i], their_infos[i]["terminal_observation"], atol=1e-5)
            ended += 1
    assert ended > 10  # the terminal observations were compared too


def test_statistics_survive_a_checkpoint_bit_for_bit_and_replays_use_them(tmp_path, monkeypatch):
    """Run A restarts its episodes after update 3 as a resume does; run B is A's run dir cut at its
    update-3 checkpoint, resumed. Both must end with the same weights and statistics."""
    calls = []

    def restart_after_update_3(self):
        if len(calls) == 3:
            self.restart(env_reset_seed(NORMALIZED["seed"], 3))
        calls.append(True)
        return original(self)

    original = SegmentCollector.collect
    with monkeypatch.context() as patch:
        patch.setattr(SegmentCollector, "collect", restart_after_update_3)
        train(config_from_dict({**NORMALIZED, "run_dir": str(tmp_path / "a")}), progress=False)
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copy(tmp_path / "a" / "config.yaml", tmp_path / "b" / "config.yaml")
    shutil.copy(tmp_path / "a" / "checkpoints" / "update_000003.pt", tmp_path / "b" / "checkpoints")
    point = find_resume_point(tmp_path / "b")
    train(point.config, progress=False, resume=point)

    a, b = (load_checkpoint(tmp_path / run / "checkpoints" / "final.pt") for run in "ab")
    assert a["normalization"] == b["normalization"] and a["normalization"]["observations"]["count"] > 6 * 64
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    at_update_3 = load_checkpoint(tmp_path / "a" / "checkpoints" / "update_000003.pt")
    assert at_update_3["normalization"] != a["normalization"]

    agent, config = load_agent(tmp_path / "a" / "checkpoints" / "final.pt")
    played = play_episodes(agent, config, 2, seed=0, deterministic=True, normalization=a["normalization"])
    assert len(played) == 2 and all(episode["length"] > 0 for episode in played)
    with pytest.raises(Exception, match="normalisation statistics"):
        play_episodes(agent, config, 1, seed=0, deterministic=True)
