"""MinAtar (Young & Tian 2019): five Atari games on a 10×10 grid of boolean planes, the field's
CPU-sized Atari. The games come from the `minatar` package; the gymnasium env is ours, so that it
renders without seaborn (MinAtar's own rgb_array render imports it) and is registered with the
toolkit's other ids (envs/registry.py: `MinAtar/<Game>-v1`, made on first use).

As MinAtar's v1 gym ids: the minimal action set, sticky actions with probability 0.1 and
difficulty ramping (the package's defaults); observations (10, 10, C) bool, height × width ×
channels (envs/images.py turns them into 0/255 planes, channels first, for the small CNN).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

GAMES = {"Asterix": "asterix", "Breakout": "breakout", "Freeway": "freeway", "Seaquest": "seaquest",
         "SpaceInvaders": "space_invaders"}
CELL = 16  # rendered pixels per grid cell: 160 × 160 frames
# One colour per plane (a plane drawn later wins where two overlap), on black.
PALETTE = np.array([
    (230, 230, 230), (231, 76, 60), (46, 204, 113), (52, 152, 219), (241, 196, 15), (155, 89, 182),
    (26, 188, 156), (230, 126, 34), (236, 112, 99), (149, 165, 166),
], dtype=np.uint8)


class MinAtarEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, game: str, render_mode: str | None = None, sticky_action_prob: float = 0.1,
                 difficulty_ramping: bool = True) -> None:
        from minatar import Environment  # imported when a game is made, not when ids are registered

        self.game = Environment(game, sticky_action_prob=sticky_action_prob,
                                difficulty_ramping=difficulty_ramping)
        self.actions = self.game.minimal_action_set()
        self.action_space = gym.spaces.Discrete(len(self.actions))
        self.observation_space = gym.spaces.Box(0, 1, self.game.state_shape(), np.bool_)
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.game.seed(seed)
        self.game.reset()
        return self.game.state().astype(np.bool_), {}

    def step(self, action: int):
        reward, terminated = self.game.act(self.actions[int(action)])
        return self.game.state().astype(np.bool_), float(reward), bool(terminated), False, {}

    def render(self) -> np.ndarray | None:
        """The grid as an RGB picture, CELL pixels a cell, each plane in its PALETTE colour."""
        if self.render_mode != "rgb_array":
            return None
        planes = self.game.state()
        frame = np.zeros(planes.shape[:2] + (3,), np.uint8)
        for channel in range(planes.shape[2]):
            frame[planes[:, :, channel].astype(bool)] = PALETTE[channel % len(PALETTE)]
        return np.repeat(np.repeat(frame, CELL, axis=0), CELL, axis=1)


def make_minatar(game: str, **kwargs: Any) -> MinAtarEnv:
    """Entry point of the MinAtar/<Game>-v1 ids: `game` is MinAtar's module name (e.g. breakout)."""
    return MinAtarEnv(game, **kwargs)
