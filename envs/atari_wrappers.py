"""Preprocessing wrappers for pixel games, as in DeepMind's DQN (Mnih et al., Nature 2015).

Each wrapper does one job and is a plain `gymnasium.Wrapper`, so they also work on envs that are
not Atari (see envs/pixels.py). `envs/atari.py` stacks them in the standard order:

    raw ALE env (NoFrameskip-v4) -> RecordEpisodeStatistics -> NoopResetWrapper
    -> MaxAndSkipWrapper -> EpisodicLifeWrapper -> FireResetWrapper -> WarpFrameWrapper
    -> ClipRewardWrapper -> FrameStackWrapper

The behaviour matches Stable-Baselines3's AtariWrapper step for step (tests/test_atari_wrappers.py
checks it) except for two deliberate fixes, noted where they happen: a seeded reset is always a
real reset, and an episode that ends inside a frame skip is max-pooled over its true last two
frames.

Every wrapper also inherits `RecordConstructorArgs`, so `env.spec` can rebuild the whole stack
(Gymnasium's `check_env` relies on that to test other render modes).
"""

from __future__ import annotations

from collections import deque
from typing import Any, SupportsFloat

import cv2
import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import RecordConstructorArgs

# OpenCL dispatch only adds start-up cost and threads for 84x84 images.
cv2.ocl.setUseOpenCL(False)

ResetReturn = tuple[np.ndarray, dict[str, Any]]
StepReturn = tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]


class NoopResetWrapper(gym.Wrapper[np.ndarray, int, np.ndarray, int], RecordConstructorArgs):
    """On reset, take a random number (1..noop_max) of no-op actions before the agent acts.

    Atari games are deterministic, so without this every episode would start from the same
    frame and an agent could memorise one action sequence. The count is drawn from the base env's
    own `np_random`, so `reset(seed=s)` always gives the same start state.
    """

    def __init__(self, env: gym.Env, noop_max: int = 30, noop_action: int = 0) -> None:
        RecordConstructorArgs.__init__(self, noop_max=noop_max, noop_action=noop_action)
        gym.Wrapper.__init__(self, env)
        if noop_max < 1:
            raise ValueError(f"noop_max must be at least 1, got {noop_max}")
        self.noop_max = noop_max
        self.noop_action = noop_action

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> ResetReturn:
        obs, info = self.env.reset(seed=seed, options=options)
        num_noops = int(self.unwrapped.np_random.integers(1, self.noop_max + 1))
        for _ in range(num_noops):
            obs, _, terminated, truncated, info = self.env.step(self.noop_action)
            if terminated or truncated:
                # The seed was already applied above; seeding again would replay the same start.
                obs, info = self.env.reset(options=options)
        return obs, info


class MaxAndSkipWrapper(gym.Wrapper[np.ndarray, int, np.ndarray, int], RecordConstructorArgs):
    """Repeat each action `skip` times; return the sum of the rewards and the pixel-wise maximum
    of the last two frames.

    Skipping frames makes an agent step cover more game time for the same compute. The maximum
    over two consecutive frames removes flicker: many Atari games draw some sprites only on even
    or only on odd frames.

    If the episode ends inside the skip, the maximum is taken over the true last two frames
    (possibly the previous step's last frame and this one). SB3's version keeps frames from the
    previous step in that case; only the final observation of an episode can differ.
    Needs an inner env that returns a new array on every step, as Gymnasium's API asks.
    """

    def __init__(self, env: gym.Env, skip: int = 4) -> None:
        RecordConstructorArgs.__init__(self, skip=skip)
        gym.Wrapper.__init__(self, env)
        if skip < 1:
            raise ValueError(f"skip must be at least 1, got {skip}")
        self.skip = skip
        self._last_frame: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> ResetReturn:
        obs, info = self.env.reset(seed=seed, options=options)
        self._last_frame = obs
        return obs, info

    def step(self, action: int) -> StepReturn:
        if self._last_frame is None:
            raise gym.error.ResetNeeded("Call reset() before step().")
        total_reward = 0.0
        frame = self._last_frame
        for _ in range(self.skip):
            previous_frame = frame
            frame, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if terminated or truncated:
                break
        self._last_frame = frame
        return np.maximum(previous_frame, frame), total_reward, terminated, truncated, info


class EpisodicLifeWrapper(gym.Wrapper[np.ndarray, int, np.ndarray, int], RecordConstructorArgs):
    """End the training episode (terminated=True) when a life is lost; restart the game only at
    game over.

    Treating a lost life as terminal tells the value function that losing a life is bad without
    having to wait for the end of a long game (DeepMind's DQN did this). After a life loss,
    `reset()` only takes one no-op step and play continues from there, so the agent still sees
    every state of the game.

    Rule: a reset called with a seed is always a real reset. A seed asks for a reproducible
    start; continuing a half-played game would ignore it. (SB3's EpisodicLifeEnv makes a
    soft reset there, which is why its AtariWrapper fails Gymnasium's check_env.)

    Reads the number of lives from the base env's `ale.lives()`.
    """

    def __init__(self, env: gym.Env) -> None:
        RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        if not hasattr(self.unwrapped, "ale"):
            raise TypeError("EpisodicLifeWrapper needs an env whose unwrapped env has `ale.lives()`")
        self.lives = 0
        self.game_over = True

    def _current_lives(self) -> int:
        return int(self.unwrapped.ale.lives())  # type: ignore[attr-defined]

    def step(self, action: int) -> StepReturn:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self._current_lives()
        # `0 < lives`: some games (Qbert) sit at zero lives for a few frames before the game ends;
        # only the game's own terminal should end that last life, so it is not counted twice.
        if 0 < lives < self.lives:
            terminated = True
        # Updating on every step also follows bonus lives upwards.
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> ResetReturn:
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            # Step past the life-loss frame instead of restarting the game.
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                # That no-op step ended the game: now a real reset is due.
                obs, info = self.env.reset(options=options)
        self.lives = self._current_lives()
        return obs, info


class FireResetWrapper(gym.Wrapper[np.ndarray, int, np.ndarray, int], RecordConstructorArgs):
    """On reset, press FIRE and then action 2, for games that wait for FIRE before play starts.

    In Breakout the ball only appears after FIRE, so an agent that has not yet learned to press it
    sees a frozen screen. Pressing FIRE then action 2 follows the DQN baselines whose scores
    are the usual reference. Placed outside EpisodicLifeWrapper, so it also serves the new ball
    after each lost life.
    """

    def __init__(self, env: gym.Env) -> None:
        RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        meanings = self.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireResetWrapper needs FIRE as action 1 and 3+ actions, got {meanings}")
        self.fire_action = 1
        self.second_action = 2

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> ResetReturn:
        obs, info = self.env.reset(seed=seed, options=options)
        for action in (self.fire_action, self.second_action):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        return obs, info


class ClipRewardWrapper(gym.RewardWrapper[np.ndarray, int], RecordConstructorArgs):
    """Replace each reward by its sign (-1, 0 or +1).

    Scores differ by orders of magnitude between games; clipping lets one set of
    hyperparameters (learning rate, value scale) serve all of them. Use info["episode"] from
    RecordEpisodeStatistics beneath this wrapper to see the real score.
    """

    def __init__(self, env: gym.Env) -> None:
        RecordConstructorArgs.__init__(self)
        gym.RewardWrapper.__init__(self, env)

    def reward(self, reward: SupportsFloat) -> float:
        return float(np.sign(float(reward)))


class WarpFrameWrapper(gym.ObservationWrapper[np.ndarray, int, np.ndarray], RecordConstructorArgs):
    """Convert an RGB frame (H, W, 3) to grayscale and resize it to (height, width, 1).

    An 84x84 gray image keeps what the agent needs to see and is about 1/20 of the
    210x160x3 Atari frame, which makes both the network and the rollout buffer cheaper.
    Resizing uses cv2.INTER_AREA (pixel-area averaging), which keeps thin objects such as
    Breakout's ball visible when shrinking. With grayscale=False the output is (height, width, 3).
    """

    def __init__(self, env: gym.Env, width: int = 84, height: int = 84, grayscale: bool = True) -> None:
        RecordConstructorArgs.__init__(self, width=width, height=height, grayscale=grayscale)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        if not (isinstance(space, spaces.Box) and len(space.shape) == 3 and space.shape[2] == 3):
            raise ValueError(f"WarpFrameWrapper needs RGB frames of shape (H, W, 3), got {space}")
        self.width = width
        self.height = height
        self.grayscale = grayscale
        channels = 1 if grayscale else 3
        self.observation_space = spaces.Box(low=0, high=255, shape=(height, width, channels), dtype=np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        frame = np.asarray(observation, dtype=np.uint8)
        if self.grayscale:
            frame = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        # cv2 takes (width, height); it drops a channel axis of size 1, so add it back.
        frame = cv2.resize(frame, (self.width, self.height), interpolation=cv2.INTER_AREA)
        return frame.reshape(self.observation_space.shape)


class FrameStackWrapper(gym.Wrapper[np.ndarray, int, np.ndarray, int], RecordConstructorArgs):
    """Stack the last `num_stack` frames, channels first: (H, W, C) in, (num_stack * C, H, W) out.

    One frame does not show motion (which way the ball flies); a short history does. The oldest
    frame comes first and the newest last (obs[-1] for grayscale). After reset the stack holds
    copies of the first frame. Channels first is the layout torch's Conv2d expects.
    """

    def __init__(self, env: gym.Env, num_stack: int = 4) -> None:
        RecordConstructorArgs.__init__(self, num_stack=num_stack)
        gym.Wrapper.__init__(self, env)
        space = env.observation_space
        if not (isinstance(space, spaces.Box) and len(space.shape) == 3):
            raise ValueError(f"FrameStackWrapper needs image frames of shape (H, W, C), got {space}")
        if num_stack < 1:
            raise ValueError(f"num_stack must be at least 1, got {num_stack}")
        self.num_stack = num_stack
        low = np.tile(np.transpose(space.low, (2, 0, 1)), (num_stack, 1, 1))
        high = np.tile(np.transpose(space.high, (2, 0, 1)), (num_stack, 1, 1))
        self.observation_space = spaces.Box(low=low, high=high, dtype=space.dtype)
        self._frames: deque[np.ndarray] = deque(maxlen=num_stack)

    def _stacked(self) -> np.ndarray:
        # np.concatenate returns a new array, so callers may keep the observations they receive.
        return np.concatenate(self._frames, axis=0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> ResetReturn:
        obs, info = self.env.reset(seed=seed, options=options)
        frame = np.transpose(obs, (2, 0, 1))
        self._frames.extend([frame] * self.num_stack)
        return self._stacked(), info

    def step(self, action: int) -> StepReturn:
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._frames.append(np.transpose(obs, (2, 0, 1)))
        return self._stacked(), reward, terminated, truncated, info
