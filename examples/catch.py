"""Catch: a game of your own, in one file, for the toolkit to train (README, "Your own game").

A ball falls down a 5 × 5 grid, one row per step, from a random column; the paddle on the bottom
row moves left, stays or moves right. A ball caught is +1, a ball missed −1; a game is 10 balls,
so the best return is 10. Registered on import, so `env_id: examples.catch:Catch-v0` is all a
config needs (gymnasium imports the module named before the colon).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

SIZE = 5
BALLS = 10


class CatchEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, render_mode: str | None = None) -> None:
        # (ball column, ball row, paddle column), each scaled to [0, 1].
        self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        self.action_space = gym.spaces.Discrete(3)  # left, stay, right
        self.render_mode = render_mode

    def _observe(self) -> np.ndarray:
        return np.array([self.ball_x, self.ball_y, self.paddle], np.float32) / (SIZE - 1)

    def _new_ball(self) -> None:
        self.ball_x, self.ball_y = int(self.np_random.integers(SIZE)), 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.paddle, self.balls = SIZE // 2, 0
        self._new_ball()
        return self._observe(), {}

    def step(self, action: int):
        self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, SIZE - 1))
        self.ball_y += 1
        reward = 0.0
        if self.ball_y == SIZE - 1:
            reward = 1.0 if self.ball_x == self.paddle else -1.0
            self.balls += 1
            self._new_ball()
        return self._observe(), reward, self.balls == BALLS, False, {}

    def render(self) -> np.ndarray:
        frame = np.zeros((SIZE, SIZE, 3), np.uint8)
        frame[self.ball_y, self.ball_x] = (255, 255, 255)
        frame[SIZE - 1, self.paddle] = (0, 200, 255)
        return np.repeat(np.repeat(frame, 32, axis=0), 32, axis=1)


if "Catch-v0" not in gym.registry:
    gym.register("Catch-v0", entry_point=CatchEnv)
