"""Observation and reward normalisation with Stable-Baselines3's VecNormalize semantics.

Observations: o ↦ clip((o − μ) / √(σ² + 1e-8), ±10), μ and σ² running over every observation of
every env (Chan et al.'s parallel mean/variance update, count starting at 1e-4). Rewards: r ↦
clip(r / √(Var[R] + 1e-8), ±10), with R ← γR + r the running discounted return of each env
(reset to 0 when its episode ends). The statistics move only while `training` is true; their
values are plain lists (state_dict), so checkpoints hold them and a resumed run or a replay uses
them exactly. Episode statistics (info["episode"]) are recorded beneath, so they stay raw.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import RecordConstructorArgs

CLIP = 10.0
EPSILON = 1e-8


class RunningMeanStd:
    """Mean and variance of everything seen so far, updated a batch at a time."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        batch = np.asarray(batch, np.float64)
        batch_mean, batch_var, batch_count = batch.mean(axis=0), batch.var(axis=0), batch.shape[0]
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var, self.count = m2 / total, total

    def normalize(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x - self.mean) / np.sqrt(self.var + EPSILON), -CLIP, CLIP).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": float(self.count)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = np.asarray(state["mean"], np.float64)
        self.var = np.asarray(state["var"], np.float64)
        self.count = float(state["count"])


class NormalizeVectorEnv(gym.vector.VectorWrapper):
    """A vector env with normalised observations (also info["final_obs"], which bootstraps
    truncated episodes) and/or rewards; see the module docstring."""

    def __init__(self, env: gym.vector.VectorEnv, observations: bool, rewards: bool, gamma: float) -> None:
        super().__init__(env)
        shape = env.single_observation_space.shape
        self.obs_rms = RunningMeanStd(shape) if observations else None
        self.return_rms = RunningMeanStd() if rewards else None
        self.gamma, self.training = gamma, True
        self.returns = np.zeros(env.num_envs)
        if observations:
            self.single_observation_space = gym.spaces.Box(-CLIP, CLIP, shape, np.float32)
            self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)

    def _observe(self, obs: np.ndarray) -> np.ndarray:
        if self.obs_rms is None:
            return obs
        if self.training:
            self.obs_rms.update(obs)
        return self.obs_rms.normalize(obs)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, infos = self.env.reset(**kwargs)
        self.returns[:] = 0.0
        return self._observe(obs), infos

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, rewards, terminated, truncated, infos = self.env.step(actions)
        obs = self._observe(obs)
        if self.obs_rms is not None and "final_obs" in infos:  # what truncated episodes bootstrap from
            final = infos["final_obs"].copy()
            for i in np.flatnonzero(infos["_final_obs"]):
                final[i] = self.obs_rms.normalize(final[i])
            infos = {**infos, "final_obs": final}
        if self.return_rms is not None:
            self.returns = self.returns * self.gamma + rewards
            if self.training:
                self.return_rms.update(self.returns)
            rewards = np.clip(rewards / np.sqrt(self.return_rms.var + EPSILON), -CLIP, CLIP)
            self.returns[terminated | truncated] = 0.0
        return obs, rewards, terminated, truncated, infos

    def state_dict(self) -> dict[str, Any]:
        return {
            "observations": self.obs_rms.state_dict() if self.obs_rms else None,
            "returns": self.return_rms.state_dict() if self.return_rms else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(state["observations"])
        if self.return_rms is not None:
            self.return_rms.load_state_dict(state["returns"])


class NormalizeObservation(gym.ObservationWrapper, RecordConstructorArgs):
    """One env's observations normalised with frozen statistics (replays, evaluation)."""

    def __init__(self, env: gym.Env, statistics: dict[str, Any]) -> None:
        RecordConstructorArgs.__init__(self, statistics=statistics)
        gym.ObservationWrapper.__init__(self, env)
        self.obs_rms = RunningMeanStd(env.observation_space.shape)
        self.obs_rms.load_state_dict(statistics)
        self.observation_space = gym.spaces.Box(-CLIP, CLIP, env.observation_space.shape, np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.obs_rms.normalize(np.asarray(observation))
