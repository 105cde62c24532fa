"""Tiny envs with known optimal behaviour, for learning and bookkeeping tests."""

import gymnasium as gym
import numpy as np


class IdentityEnv(gym.Env):
    """Observation: a random id in [0, n); reward 1 when the action equals it. Max return = length."""

    def __init__(self, n: int = 4, length: int = 20) -> None:
        self.observation_space = gym.spaces.Discrete(n)
        self.action_space = gym.spaces.Discrete(n)
        self.length = length

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.state = int(self.np_random.integers(self.observation_space.n))
        return self.state, {}

    def step(self, action):
        reward = float(action == self.state)
        self.t += 1
        self.state = int(self.np_random.integers(self.observation_space.n))
        return self.state, reward, False, self.t >= self.length, {}


class CounterEnv(gym.Env):
    """Observation = number of steps taken so far; terminates when action 1 is taken at step ≥ 2."""

    observation_space = gym.spaces.Box(0, 100, shape=(1,), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], dtype=np.float32), {}

    def step(self, action):
        self.t += 1
        terminated = bool(action == 1 and self.t >= 2)
        return np.array([float(self.t)], dtype=np.float32), 1.0, terminated, False, {}


gym.register("tests/Identity-v0", entry_point=IdentityEnv)
gym.register("tests/Counter-v0", entry_point=CounterEnv, max_episode_steps=3)
