"""Vector environments for training, built from the `env` section of a config."""

from __future__ import annotations

import difflib
from typing import Callable

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from agents.config import ConfigError, TrainConfig


def check_env_id(env_id: str) -> None:
    """Raise ConfigError for an id gymnasium does not know, naming the closest registered ids."""
    if env_id in gym.registry:
        return
    close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown env id '{env_id}'{hint}")


def make_single_env(env_id: str, env_kwargs: dict) -> gym.Env:
    """One env with episode statistics recorded on the raw rewards (before any reward shaping)."""
    env = gym.make(env_id, **env_kwargs)
    return gym.wrappers.RecordEpisodeStatistics(env)


def make_vector_env(config: TrainConfig) -> gym.vector.VectorEnv:
    """A Sync or Async vector env of `env.num_envs` copies, in SAME_STEP autoreset mode.

    Why SAME_STEP: when an episode ends at step t, the step returns the next episode's first
    observation and puts the real final observation in info["final_obs"]. Every stored
    transition is then a real one (NEXT_STEP mode would return one dummy reset transition per
    episode that has to be masked out of training, costing a step per episode: one in seven for
    short text-generation episodes) and env steps count the same way as in Stable-Baselines3.
    Truncated episodes bootstrap from V(info["final_obs"]) (see agents/gae.py).
    """
    env_cfg = config.env
    check_env_id(config.env_id)
    # Build one env in this process first: a bad kwarg or an unsupported action space is then
    # reported as a config error instead of an exception inside a worker process.
    try:
        probe = make_single_env(config.env_id, env_cfg.kwargs)
    except Exception as exc:  # any failure of a third-party constructor is the config's fault here
        raise ConfigError(f"cannot create env '{config.env_id}' with env.kwargs={env_cfg.kwargs}: {exc}") from None
    action_space = probe.action_space
    probe.close()
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(
            f"{config.env_id} has a {type(action_space).__name__} action space; "
            "this toolkit's policies are categorical (Discrete actions only)"
        )

    def thunk() -> gym.Env:
        return make_single_env(config.env_id, env_cfg.kwargs)

    thunks: list[Callable[[], gym.Env]] = [thunk] * env_cfg.num_envs
    if env_cfg.vectorization == "async":
        envs = gym.vector.AsyncVectorEnv(thunks, autoreset_mode=AutoresetMode.SAME_STEP)
    else:
        envs = gym.vector.SyncVectorEnv(thunks, autoreset_mode=AutoresetMode.SAME_STEP)
    return envs


def finished_episodes(infos: dict) -> list[tuple[float, int]]:
    """(return, length) of each episode that ended in this vector step (SAME_STEP layout)."""
    final_info = infos.get("final_info", {})
    if "episode" not in final_info:
        return []
    stats, mask = final_info["episode"], final_info["_episode"]
    return [(float(stats["r"][i]), int(stats["l"][i])) for i in np.flatnonzero(mask)]
