"""CartPole-v1 as one vector env stepped in plain Python (`env.vector_backend: native`).

Why: a SyncVectorEnv of gymnasium's CartPole spends about 100 µs a vector step of 8 envs, most of
it in the layers around each env (TimeLimit, OrderEnforcing, the passive env checker,
RecordEpisodeStatistics, a space check of every action, info dicts merged per step), against
about 15 µs for the physics of all 8. On CartPole's PPO settings that is a tenth of the training
loop. gymnasium's own CartPoleVectorEnv autoresets NEXT_STEP only and draws every env's restarts
from one generator, so its trajectories differ from the SyncVectorEnv's; this toolkit's rollouts
need SAME_STEP (envs/vector.py says why).

The trajectories are those of `gymnasium.vector.SyncVectorEnv` of `gymnasium.make("CartPole-v1")`
with RecordEpisodeStatistics in SAME_STEP mode, number for number (tests/test_cartpole_vector.py):
env i is seeded with seed + i and draws its starts from its own generator, U(−0.05, 0.05) for
each of x, ẋ, θ, θ̇. The dynamics are the cart-pole equations of Barto, Sutton & Anderson (1983)
in the corrected form of Florian (2007), with force F = ±10 N, g = 9.8, cart mass 1, pole mass
0.1, pole half-length 0.5, and one Euler step of τ = 0.02 s:

    θ̈ = (g sin θ − cos θ · t) / (l (4/3 − m_p cos² θ / M)),   t = (F + m_p l θ̇² sin θ) / M
    ẍ = t − m_p l θ̈ cos θ / M

Reward 1 every step, terminated when |x| > 2.4 or |θ| > 12°, truncated at 500 steps. The float64
state is evaluated in the same order as gymnasium's, so each rounding is the same too.
"""

from __future__ import annotations

import math
import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

ENV_ID = "CartPole-v1"
MAX_EPISODE_STEPS = 500
GRAVITY, CART_MASS, POLE_MASS, HALF_LENGTH, FORCE, TAU = 9.8, 1.0, 0.1, 0.5, 10.0, 0.02
TOTAL_MASS = POLE_MASS + CART_MASS
POLE_MASS_LENGTH = POLE_MASS * HALF_LENGTH
X_LIMIT = 2.4
THETA_LIMIT = 12 * 2 * math.pi / 360  # 12° in radians, computed as gymnasium computes it
START_BOUND = 0.05


def is_gymnasiums_cartpole(spec: gym.envs.registration.EnvSpec) -> bool:
    """Whether `spec` (what gym.make would build) is the game this module plays: gymnasium's
    CartPole class with its 500-step limit and no keyword arguments (a user may re-register the id)."""
    return (
        spec.entry_point == "gymnasium.envs.classic_control.cartpole:CartPoleEnv"
        and spec.max_episode_steps == MAX_EPISODE_STEPS
        and not spec.kwargs
    )


def cartpole_step(state: list[float], push_right: bool) -> list[float]:
    """(x, ẋ, θ, θ̇) one Euler step of τ later, pushed with +F (right) or −F (the module's equations)."""
    x, x_dot, theta, theta_dot = state
    force = FORCE if push_right else -FORCE
    cos_theta, sin_theta = math.cos(theta), math.sin(theta)
    temp = (force + POLE_MASS_LENGTH * (theta_dot * theta_dot) * sin_theta) / TOTAL_MASS
    theta_acc = (GRAVITY * sin_theta - cos_theta * temp) / (
        HALF_LENGTH * (4.0 / 3.0 - POLE_MASS * (cos_theta * cos_theta) / TOTAL_MASS)
    )
    x_acc = temp - POLE_MASS_LENGTH * theta_acc * cos_theta / TOTAL_MASS
    return [x + TAU * x_dot, x_dot + TAU * x_acc, theta + TAU * theta_dot, theta_dot + TAU * theta_acc]


def is_fallen(state: list[float]) -> bool:
    """Whether the cart left the track (|x| > 2.4) or the pole tipped past 12°."""
    x, theta = state[0], state[2]
    return x < -X_LIMIT or x > X_LIMIT or theta < -THETA_LIMIT or theta > THETA_LIMIT


class CartPoleVectorEnv(gym.vector.VectorEnv):
    """`num_envs` CartPole-v1 games in SAME_STEP autoreset mode, with gymnasium's info layout:
    when env i's episode ends, obs[i] is its next episode's first observation,
    infos["final_obs"][i] the real last one, and infos["final_info"]["episode"] its return "r",
    length "l" and duration "t" (each with its "_key" mask over the envs)."""

    metadata = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        probe = gym.make(ENV_ID)
        self.single_observation_space = probe.observation_space
        probe.close()
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self._generators = [np.random.default_rng() for _ in range(num_envs)]
        self._states: list[list[float]] = [[0.0] * 4 for _ in range(num_envs)]
        self._lengths = [0] * num_envs
        self._started = [0.0] * num_envs
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        """Every env's first observation; with `seed`, env i's generator is seeded with seed + i."""
        if options:
            raise ValueError(f"{type(self).__name__}.reset takes no options, got {options}")
        if seed is not None:
            self._generators = [np.random.default_rng(seed + i) for i in range(self.num_envs)]
        for i in range(self.num_envs):
            self._restart(i)
        self._needs_reset = False
        return np.array(self._states, dtype=np.float32), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        pushes = np.asarray(actions).tolist()
        if len(pushes) != self.num_envs or any(push not in (0, 1) for push in pushes):
            raise ValueError(f"expected {self.num_envs} actions, each 0 or 1, got {actions!r}")
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        ended: list[int] = []
        final_states: list[list[float]] = []
        for i, push in enumerate(pushes):
            state = cartpole_step(self._states[i], push == 1)
            self._states[i] = state
            self._lengths[i] += 1
            terminated[i] = is_fallen(state)
            truncated[i] = self._lengths[i] >= MAX_EPISODE_STEPS
            if terminated[i] or truncated[i]:
                ended.append(i)
                final_states.append(state)
        infos = self._final_infos(ended, final_states) if ended else {}
        for i in ended:
            self._restart(i)
        rewards = np.ones(self.num_envs, dtype=np.float64)
        return np.array(self._states, dtype=np.float32), rewards, terminated, truncated, infos

    def _restart(self, i: int) -> None:
        self._states[i] = self._generators[i].uniform(-START_BOUND, START_BOUND, size=4).tolist()
        self._lengths[i] = 0
        self._started[i] = time.perf_counter()

    def _final_infos(self, ended: list[int], final_states: list[list[float]]) -> dict:
        """gymnasium's SAME_STEP info layout for the envs in `ended` (every reward is 1, so an
        episode's return is its length)."""
        n = self.num_envs
        mask = np.zeros(n, dtype=bool)
        mask[ended] = True
        final_obs = np.full(n, None, dtype=object)
        returns, lengths, durations = np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n)
        now = time.perf_counter()
        for i, state in zip(ended, final_states):
            final_obs[i] = np.array(state, dtype=np.float32)
            returns[i] = lengths[i] = self._lengths[i]
            durations[i] = round(now - self._started[i], 6)
        episode = {"r": returns, "l": lengths, "t": durations}
        episode.update({f"_{key}": mask.copy() for key in episode})
        return {
            "final_obs": final_obs,
            "_final_obs": mask.copy(),
            "final_info": {"episode": episode, "_episode": mask.copy()},
            "_final_info": mask.copy(),
        }
