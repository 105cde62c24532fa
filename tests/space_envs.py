"""Toy envs, one per kind of space, each with a known best return (issue 16's checks)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

LENGTH = 10  # steps per episode of every env here; the best return is LENGTH


class MatchTwoEnv(gym.Env):
    """MultiDiscrete([3, 3]) actions: both sub-actions must equal the two targets shown one-hot;
    reward 0.5 per matching sub-action."""

    observation_space = gym.spaces.Box(0, 1, (6,), np.float32)
    action_space = gym.spaces.MultiDiscrete([3, 3])

    def _observe(self):
        self.targets = self.np_random.integers(3, size=2)
        obs = np.zeros(6, np.float32)
        obs[self.targets[0]] = obs[3 + self.targets[1]] = 1
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = 0.5 * float(np.sum(np.asarray(action) == self.targets))
        self.t += 1
        return self._observe(), reward, False, self.t >= LENGTH, {}


class CopyBitsEnv(gym.Env):
    """MultiBinary(4) actions: copy the four bits shown; reward = share of bits copied."""

    observation_space = gym.spaces.Box(0, 1, (4,), np.float32)
    action_space = gym.spaces.MultiBinary(4)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.bits = self.np_random.integers(2, size=4)
        return self.bits.astype(np.float32), {}

    def step(self, action):
        reward = float(np.mean(np.asarray(action) == self.bits))
        self.t += 1
        self.bits = self.np_random.integers(2, size=4)
        return self.bits.astype(np.float32), reward, False, self.t >= LENGTH, {}


class MirrorEnv(gym.Env):
    """Box(−1, 1, (2,)) actions: the best action is −x for the observation x; reward
    max(0, 1 − ‖a − (−x)‖₁), 1 at best."""

    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def _observe(self):
        self.x = self.np_random.uniform(-1, 1, size=2).astype(np.float32)
        return self.x

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        assert self.action_space.contains(action), action  # clipped to the bounds before it got here
        reward = max(0.0, 1.0 - float(np.abs(action + self.x).sum()))
        self.t += 1
        return self._observe(), reward, False, self.t >= LENGTH, {}


class MaskedIdentityEnv(gym.Env):
    """Discrete(4): reward 1 for the action equal to the observed target. info["action_mask"] allows
    the target and one other action; an invalid action ends the episode with −10."""

    observation_space = gym.spaces.Discrete(4)
    action_space = gym.spaces.Discrete(4)
    invalid_actions_taken = 0  # over every instance: what a masked agent must never do

    def _observe(self):
        self.target = int(self.np_random.integers(4))
        other = (self.target + 1 + int(self.np_random.integers(3))) % 4
        self.mask = np.zeros(4, dtype=bool)
        self.mask[[self.target, other]] = True
        return self.target, {"action_mask": self.mask.copy()}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe()

    def step(self, action):
        self.t += 1
        if not self.mask[int(action)]:
            type(self).invalid_actions_taken += 1
            obs, info = self._observe()
            return obs, -10.0, True, False, info
        reward = float(int(action) == self.target)
        obs, info = self._observe()
        return obs, reward, False, self.t >= LENGTH, info


class ColourEnv(gym.Env):
    """A 10×10 RGB image lit in one of three channels; reward 1 for the action naming it.
    channels_last: stored (H, W, C) as CarRacing or MiniGrid do, else (C, H, W); bool: planes."""

    action_space = gym.spaces.Discrete(3)

    def __init__(self, channels_last: bool = True, planes: bool = False) -> None:
        self.channels_last, self.planes = channels_last, planes
        shape = (10, 10, 3) if channels_last else (3, 10, 10)
        dtype = np.bool_ if planes else np.uint8
        self.observation_space = gym.spaces.Box(0, 1 if planes else 255, shape, dtype)

    def _observe(self):
        self.colour = int(self.np_random.integers(3))
        image = np.zeros((3, 10, 10), np.uint8)
        image[self.colour] = self.np_random.integers(100, 256, size=(10, 10))
        if self.planes:
            image = image > 0
        return np.transpose(image, (1, 2, 0)).copy() if self.channels_last else image

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        reward = float(int(action) == self.colour)
        self.t += 1
        return self._observe(), reward, False, self.t >= LENGTH, {}


class DictHintEnv(gym.Env):
    """Dict observation: the answer in a Discrete entry, beside a noise vector, an RGB image of
    noise (H, W, C) and the valid actions as an "action_mask" entry (the answer and one other);
    reward 1 for the answer, an invalid action ends the episode with −10."""

    observation_space = gym.spaces.Dict({
        "hint": gym.spaces.Discrete(3),
        "noise": gym.spaces.Box(-1, 1, (2,), np.float32),
        "image": gym.spaces.Box(0, 255, (6, 6, 3), np.uint8),
        "action_mask": gym.spaces.MultiBinary(3),
    })
    action_space = gym.spaces.Discrete(3)
    invalid_actions_taken = 0

    def _observe(self):
        self.hint = int(self.np_random.integers(3))
        self.mask = np.zeros(3, dtype=np.int8)
        self.mask[[self.hint, (self.hint + 1 + int(self.np_random.integers(2))) % 3]] = 1
        return {
            "hint": self.hint,
            "noise": self.np_random.uniform(-1, 1, 2).astype(np.float32),
            "image": self.np_random.integers(0, 256, (6, 6, 3), dtype=np.uint8),
            "action_mask": self.mask.copy(),
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._observe(), {}

    def step(self, action):
        self.t += 1
        if not self.mask[int(action)]:
            type(self).invalid_actions_taken += 1
            return self._observe(), -10.0, True, False, {}
        reward = float(int(action) == self.hint)
        return self._observe(), reward, False, self.t >= LENGTH, {}


class TextObservationEnv(gym.Env):
    observation_space = gym.spaces.Text(8)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "hello", {}

    def step(self, action):
        return "hello", 0.0, True, False, {}


class FailOnRank1Env(gym.Env):
    """CartPole-like spaces; on torchrun's rank 1, its 100th step raises (a game that crashes)."""

    observation_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.steps = getattr(self, "steps", 0)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        import os

        self.steps += 1
        if os.environ.get("RANK") == "1" and self.steps >= 100:
            raise RuntimeError("the game crashed")
        return np.zeros(4, np.float32), 1.0, False, self.steps % 20 == 0, {}


for _id, _entry, _kwargs in (
    ("tests/MatchTwo-v0", MatchTwoEnv, {}),
    ("tests/CopyBits-v0", CopyBitsEnv, {}),
    ("tests/Mirror-v0", MirrorEnv, {}),
    ("tests/MaskedIdentity-v0", MaskedIdentityEnv, {}),
    ("tests/ColourHWC-v0", ColourEnv, {"channels_last": True}),
    ("tests/ColourCHW-v0", ColourEnv, {"channels_last": False}),
    ("tests/ColourPlanes-v0", ColourEnv, {"channels_last": True, "planes": True}),
    ("tests/DictHint-v0", DictHintEnv, {}),
    ("tests/TextObservation-v0", TextObservationEnv, {}),
    ("tests/FailOnRank1-v0", FailOnRank1Env, {}),
):
    if _id not in gym.registry:
        gym.register(_id, entry_point=_entry, kwargs=_kwargs)
