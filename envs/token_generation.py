"""Text generation as a game: each step the agent appends one token; the task scores the result.

Observation: a fixed-length int64 array of prompt + generated tokens, right-padded with PAD = 0,
in a MultiDiscrete([vocab_size] * max_len) space (max_len = task.max_prompt_len +
max_new_tokens); its current length is its number of non-PAD tokens. A flat MultiDiscrete space
is what Stable-Baselines3's MlpPolicy takes as is (it one-hot encodes every position), and a
sequence model reads the same array as token ids.

Action: a token id, Discrete(vocab_size). EOS (id 1) ends the episode (terminated). PAD (id 0) can
never be part of a text (it marks "no token" in the observation), so emitting it is read as
emitting EOS; the toolkit's transformer never samples it (its PAD logit is masked).

Reward: 0 on every step but the last, where it is task.score(prompt, completion) (the completion
excludes EOS), plus `no_eos_penalty` (≤ 0) when the episode is truncated at `max_new_tokens`
generated tokens without an EOS. Reward on the last real step only is the RLHF convention: the
per-token credit comes from the value head and GAE.

Registered ids (envs/registry.py):
- TokenGen/DigitSort-v0: kwargs k=5, max_new_tokens=k+1, no_eos_penalty=0.0.
- TokenGen/Sentiment-v0: kwargs max_new_tokens=10, no_eos_penalty=0.0.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from envs.token_tasks import EOS_ID, PAD_ID, DigitSortTask, SentimentTask, TokenTask


class TokenGenerationEnv(gym.Env):
    """One episode = one completion of a prompt sampled from `task`; see the module docstring."""

    # "ansi": the decoded text; "rgb_array": one colour cell per position (black = PAD), so that
    # video-recording wrappers, and Stable-Baselines3 (which asks for rgb_array), work unchanged.
    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}
    CELL = 8  # pixels per token cell in rgb_array renders

    def __init__(
        self,
        task: TokenTask,
        max_new_tokens: int,
        no_eos_penalty: float = 0.0,
        render_mode: str | None = None,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if no_eos_penalty > 0:
            raise ValueError(f"no_eos_penalty is added to the reward and must be <= 0, got {no_eos_penalty}")
        if task.pad_id != PAD_ID or task.eos_id != EOS_ID:
            raise ValueError("tasks must use PAD id 0 and EOS id 1")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"unsupported render_mode {render_mode!r}")
        self.task = task
        self.max_new_tokens = int(max_new_tokens)
        self.no_eos_penalty = float(no_eos_penalty)
        self.render_mode = render_mode
        self.vocab_size = len(task.vocab)
        self.max_len = task.max_prompt_len + self.max_new_tokens
        self.observation_space = gym.spaces.MultiDiscrete(
            np.full(self.max_len, self.vocab_size), dtype=np.int64
        )
        self.action_space = gym.spaces.Discrete(self.vocab_size)
        palette = np.random.default_rng(0).integers(64, 256, size=(self.vocab_size, 3), dtype=np.uint8)
        palette[PAD_ID], palette[EOS_ID] = 0, 255
        self._palette = palette
        self._prompt: list[int] = []
        self._completion: list[int] = []
        self._done = True

    def _obs(self) -> np.ndarray:
        obs = np.full(self.max_len, PAD_ID, dtype=np.int64)
        tokens = self._prompt + self._completion
        obs[: len(tokens)] = tokens
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        """Sample a prompt with the env's own np_random; `options={"prompt": ids}` forces one."""
        super().reset(seed=seed)
        if options and options.get("prompt") is not None:
            prompt = [int(t) for t in options["prompt"]]
        else:
            prompt = self.task.sample_prompt(self.np_random)
        if not 1 <= len(prompt) <= self.task.max_prompt_len:
            raise ValueError(f"prompt length {len(prompt)} is not in [1, {self.task.max_prompt_len}]")
        if any(t in (PAD_ID, EOS_ID) or not 0 <= t < self.vocab_size for t in prompt):
            raise ValueError(f"prompt {prompt} holds PAD/EOS or out-of-vocabulary ids")
        self._prompt, self._completion, self._done = prompt, [], False
        return self._obs(), {"prompt_len": len(prompt)}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("step() called on a finished episode; call reset() first")
        token = int(action)
        if not 0 <= token < self.vocab_size:
            raise ValueError(f"action {token} is not a token id in [0, {self.vocab_size})")
        if token == PAD_ID:
            token = EOS_ID  # see the module docstring: PAD cannot be part of a text
        if token == EOS_ID:
            # EOS is kept in the final observation (the text visibly ended) but not scored.
            terminated, truncated = True, False
            completion = list(self._completion)
            self._completion.append(EOS_ID)
        else:
            self._completion.append(token)
            terminated = False
            truncated = len(self._completion) >= self.max_new_tokens
            completion = list(self._completion)
        reward, info = 0.0, {}
        if terminated or truncated:
            self._done = True
            score = float(self.task.score(self._prompt, completion))
            reward = score + (self.no_eos_penalty if truncated else 0.0)
            info = {
                "score": score,
                "completion": completion,
                "text": self.task.decode(completion),
                "prompt_text": self.task.decode(self._prompt),
            }
        return self._obs(), reward, terminated, truncated, info

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "ansi":
            return self.task.decode(self._prompt + self._completion)
        if self.render_mode == "rgb_array":
            cells = self._palette[self._obs()][None]  # [1, max_len, 3]
            return np.repeat(np.repeat(cells, self.CELL, axis=0), self.CELL, axis=1)
        return None


def make_digit_sort_env(
    k: int = 5, max_new_tokens: int | None = None, no_eos_penalty: float = 0.0, render_mode: str | None = None
) -> TokenGenerationEnv:
    """DigitSort with k digits; by default k + 1 new tokens (k digits and EOS)."""
    return TokenGenerationEnv(
        DigitSortTask(k), k + 1 if max_new_tokens is None else max_new_tokens, no_eos_penalty, render_mode
    )


def make_sentiment_env(
    max_new_tokens: int = 10, no_eos_penalty: float = 0.0, render_mode: str | None = None
) -> TokenGenerationEnv:
    """Sentiment: finish a sentence start; the reward is VADER's compound score of the sentence."""
    return TokenGenerationEnv(SentimentTask(), max_new_tokens, no_eos_penalty, render_mode)

