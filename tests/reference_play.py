"""An independent evaluation loop for the tests: the env built by hand from envs.atari.make_atari or
gymnasium.make (not through agents.run.evaluation), one plain loop per game.

Same conventions as agents/run/evaluation.py so that results must be equal: episode i resets with
seed + i; sampled actions come from torch's global RNG seeded once with `seed`; in Atari games
trained with life-loss terminals, a lost life is followed by NOOP, FIRE, RIGHT (what the
training env did on its own). Atari scores are also checked against the raw env's
RecordEpisodeStatistics, the whole-game score that no wrapper touched.
"""

from __future__ import annotations

import gymnasium as gym
import torch

import envs.token_generation  # noqa: F401  registers TokenGen/ ids
from agents.config import TrainConfig
from envs.atari import is_atari, make_atari


def reference_env(config: TrainConfig) -> gym.Env:
    if not is_atari(config.env_id):
        return gym.make(config.env_id, **config.env.kwargs)
    atari, env = config.env.atari, config.env
    return make_atari(
        config.env_id,
        noop_max=atari.noop_max,
        frame_skip=atari.frame_skip,
        terminal_on_life_loss=False,
        fire_reset=atari.fire_reset,
        clip_reward=False,
        screen_size=env.screen_size,
        grayscale=env.grayscale,
        frame_stack=env.frame_stack,
    )


@torch.inference_mode()
def reference_play(
    agent: torch.nn.Module, config: TrainConfig, episodes: int, seed: int, deterministic: bool
) -> list[tuple[float, int, str | None]]:
    """(return, agent steps, text or None) of each episode."""
    env = reference_env(config)
    atari = is_atari(config.env_id)
    restart = atari and config.env.atari.terminal_on_life_loss and config.env.atari.fire_reset
    torch.manual_seed(seed)
    results = []
    for index in range(episodes):
        obs, _ = env.reset(seed=seed + index)
        lives = env.unwrapped.ale.lives() if atari else 0
        score, steps, done, info = 0.0, 0, False, {}
        while not done:
            action = agent.act(torch.as_tensor(obs).unsqueeze(0), deterministic=deterministic)[0]
            obs, reward, terminated, truncated, info = env.step(int(action.item()))
            score, steps, done = score + float(reward), steps + 1, terminated or truncated
            now = env.unwrapped.ale.lives() if atari else 0
            if restart and not done and 0 < now < lives:
                for forced in (0, 1, 2):
                    obs, reward, terminated, truncated, info = env.step(forced)
                    score, done = score + float(reward), terminated or truncated
                    if done:
                        break
                now = env.unwrapped.ale.lives()
            lives = now
        if atari:
            assert score == info["episode"]["r"], "the score must be the raw whole-game score"
        results.append((score, steps, info.get("text")))
    env.close()
    return results
