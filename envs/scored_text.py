"""A token env whose final reward comes from a scorer: the RLHF setting, where a learned reward
model stands in for the task's own (gold) judge.

The scorer is a plain callable, tokens → float (TRL's reward-function shape): envs/ knows nothing
of networks, agents/rlhf/reward_model.py turns a reward model into one.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

from envs.sentiment_corpus import grammar_accepts
from envs.token_generation import TokenGenerationEnv

Scorer = Callable[[np.ndarray], float]  # a finished observation (prompt + completion, padded) → r


class ScoredTextEnv(gym.Wrapper):
    """Replaces the task's score in the final reward by `scorer`(final observation).

    Final reward = r + (env reward − gold score), i.e. the env's no-EOS penalty is kept. The gold
    score (the task's own) goes to info["gold_score"], r to info["rm_score"], and 1.0 / 0.0 to
    info["grammatical"] as the sentiment grammar accepts / rejects the sentence (fluency). With
    `prompts`, episodes draw their prompt from that list (seeded by reset(seed)), which keeps
    evaluation prompts out of training.
    """

    def __init__(
        self, env: TokenGenerationEnv, scorer: Scorer, prompts: Sequence[Sequence[int]] | None = None
    ):
        super().__init__(env)
        self.scorer = scorer
        self.prompts = [list(map(int, p)) for p in prompts] if prompts else None
        self._prompt_rng = np.random.default_rng()

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._prompt_rng = np.random.default_rng(seed)
        if self.prompts and not (options and options.get("prompt") is not None):
            options = {
                **(options or {}),
                "prompt": self.prompts[int(self._prompt_rng.integers(len(self.prompts)))],
            }
        return self.env.reset(seed=seed, options=options)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            score = float(self.scorer(obs))
            reward = score + (reward - info["score"])
            info = {
                **info,
                "gold_score": info["score"],
                "rm_score": score,
                "grammatical": float(grammar_accepts(obs)),
            }
        return obs, reward, terminated, truncated, info
