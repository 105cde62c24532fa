"""Vector environments for training, built from a run's env id, seed and env options."""

from __future__ import annotations

from functools import partial
from typing import Callable

import cv2
import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from envs.atari import is_atari, make_atari
from envs.cartpole_vector import ENV_ID as CARTPOLE_ID
from envs.cartpole_vector import CartPoleVectorEnv, is_gymnasiums_cartpole
from envs.layout import with_layout
from envs.normalize import NormalizeVectorEnv
from envs.options import SELF_STEPPING_BACKENDS, ConfigError, EnvOptions, GameSpec
from envs.overlap import OverlappedVectorEnv
from envs.pixels import make_pixel_env
from envs.registry import check_env_id, import_env_modules, wrapper_specs
from envs.shards import ShardedVectorEnv


def is_pixel_game(env_id: str, env_cfg: EnvOptions) -> bool:
    return env_cfg.pixels or is_atari(env_id)


def make_single_env(env_id: str, env_cfg: EnvOptions) -> gym.Env:
    """One training env: Atari preprocessing for ALE ids, warped and stacked renders with
    `pixels: true`, the plain env otherwise (its images channels first, envs/images.py; Dict and
    Tuple observations as one structured vector, envs/structured.py). Episode
    statistics (info["episode"]) are always recorded on the raw env, beneath reward clipping and
    life-loss terminals. `env.imports` are imported first (user packages that register ids)."""
    import_env_modules(env_cfg.imports)
    if is_atari(env_id):
        return make_atari(env_id, **env_cfg.atari.as_kwargs(), **env_cfg.frame_kwargs(), **env_cfg.kwargs)
    if env_cfg.pixels:
        return make_pixel_env(env_id, **env_cfg.frame_kwargs(), **env_cfg.kwargs)
    env = gym.wrappers.RecordEpisodeStatistics(gym.make(env_id, **env_cfg.kwargs))
    for wrapper, kwargs in wrapper_specs(env_cfg.wrappers):
        env = wrapper(env, **kwargs)
    return with_layout(env)


def _worker_env(env_id: str, env_cfg: EnvOptions) -> gym.Env:
    # Each worker process gets one thread: OpenCV's own pool would otherwise fight the learner
    # for the same cores (see the oversubscription note in shared/notes/platform.md).
    cv2.setNumThreads(1)
    return make_single_env(env_id, env_cfg)


def make_vector_env(config: GameSpec, gamma: float = 0.99) -> gym.vector.VectorEnv:
    """A Sync or Async vector env of `env.num_envs` copies (resolved_vectorization), in SAME_STEP
    autoreset mode; Async as a process per env, or as env.num_workers processes of several envs
    each (envs/shards.py); with `overlap`, two Async halves that a rollout steps in turn
    (envs/overlap.py).

    Why SAME_STEP: when an episode ends at step t, the step returns the next episode's first
    observation and puts the real final observation in info["final_obs"]. Every stored
    transition is then a real one (NEXT_STEP mode would return one dummy reset transition per
    episode that has to be masked out of training, costing a step per episode: one in seven for
    short text-generation episodes) and env steps count the same way as in Stable-Baselines3.
    Truncated episodes bootstrap from V(info["final_obs"]) (see agents/core/gae.py).
    env.vector_backend picks who steps the envs: gymnasium's vector envs (above), envpool
    (Atari) or native (CartPole-v1 in plain Python, envs/cartpole_vector.py); see resolved_backend.
    With env.normalize_obs / normalize_reward, a NormalizeVectorEnv (envs/normalize.py; `gamma`
    discounts its returns) goes around the whole vector env.
    """
    env_cfg = config.env
    check_env_id(config.env_id, env_cfg.imports)
    env_cfg.check_workers()
    if env_cfg.vectorization == "overlap":
        check_overlap(env_cfg)
    backend = resolved_backend(config.env_id, env_cfg)
    if backend == "envpool":
        return _make_envpool(config)
    if backend == "native":
        return _make_native(config, gamma)
    # Build one env in this process first: a bad kwarg is then reported as a config error
    # instead of an exception inside a worker process.
    try:
        make_single_env(config.env_id, env_cfg).close()
    except ConfigError:
        raise
    except Exception as exc:  # any failure of a third-party constructor is the config's fault here
        raise ConfigError(
            f"cannot create env '{config.env_id}' with env.kwargs={env_cfg.kwargs}: {exc}"
        ) from None

    thunks: list[Callable[[], gym.Env]] = [partial(_worker_env, config.env_id, env_cfg)] * env_cfg.num_envs
    vectorization = resolved_vectorization(config.env_id, env_cfg)
    if vectorization == "overlap":
        return OverlappedVectorEnv(thunks, env_cfg.num_workers)
    if vectorization == "async" and env_cfg.num_workers:
        envs = ShardedVectorEnv(thunks, env_cfg.num_workers)
    elif vectorization == "async":
        envs = gym.vector.AsyncVectorEnv(thunks, autoreset_mode=AutoresetMode.SAME_STEP)
    else:
        envs = gym.vector.SyncVectorEnv(thunks, autoreset_mode=AutoresetMode.SAME_STEP)
    return normalized(envs, env_cfg, gamma)


def normalized(envs: gym.vector.VectorEnv, env_cfg: EnvOptions, gamma: float) -> gym.vector.VectorEnv:
    """`envs` inside a NormalizeVectorEnv when env.normalize_obs or env.normalize_reward asks."""
    if env_cfg.normalize_obs or env_cfg.normalize_reward:
        return NormalizeVectorEnv(envs, env_cfg.normalize_obs, env_cfg.normalize_reward, gamma)
    return envs


def resolved_vectorization(env_id: str, env_cfg: EnvOptions) -> str:
    """env.vectorization with auto decided: async for pixel games (a step costs enough to pay
    for the traffic to a process per env) and wherever env.num_workers asks for worker processes,
    sync otherwise."""
    if env_cfg.vectorization != "auto":
        return env_cfg.vectorization
    return "async" if is_pixel_game(env_id, env_cfg) or env_cfg.num_workers else "sync"


def check_overlap(env_cfg: EnvOptions) -> None:
    """Refuse what env.vectorization: overlap cannot split into two env groups."""
    if env_cfg.num_envs < 2 or env_cfg.normalize_obs or env_cfg.normalize_reward:
        raise ConfigError(
            "env.vectorization: overlap steps two groups of envs, so it needs env.num_envs >= 2 "
            f"(got {env_cfg.num_envs}) and no env.normalize_obs / env.normalize_reward "
            "(their running statistics span all envs at once)"
        )
    if env_cfg.vector_backend in SELF_STEPPING_BACKENDS:
        raise ConfigError(
            "env.vectorization: overlap runs gymnasium's worker processes; "
            f"env.vector_backend: {env_cfg.vector_backend} has its own"
        )


def _make_envpool(config: GameSpec) -> gym.vector.VectorEnv:
    """The same Atari preprocessing run by envpool (see envs/envpool_backend.py for the few
    places where its semantics differ from our wrappers)."""
    env_cfg = config.env
    if not is_atari(config.env_id) or env_cfg.pixels:
        raise ConfigError(f"env.vector_backend: envpool runs Atari games only, not '{config.env_id}'")
    if env_cfg.kwargs:
        raise ConfigError(
            f"env.kwargs are not supported with env.vector_backend: envpool, got {env_cfg.kwargs}"
        )
    try:
        from envs.envpool_backend import make_envpool_vector_env
    except ImportError as exc:
        raise ConfigError(f"env.vector_backend: envpool needs the envpool package ({exc})") from None
    try:
        return make_envpool_vector_env(
            config.env_id,
            env_cfg.num_envs,
            config.seed,
            **env_cfg.atari.as_kwargs(),
            **env_cfg.frame_kwargs(),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def resolved_backend(env_id: str, env_cfg: EnvOptions) -> str:
    """env.vector_backend with auto decided: native where it plays the game as configured
    (native_refusal), gymnasium otherwise. Native's games are gymnasium's, number for number, so
    auto changes the speed of a run and nothing else."""
    if env_cfg.vector_backend != "auto":
        return env_cfg.vector_backend
    return "gymnasium" if native_refusal(env_id, env_cfg) else "native"


def native_refusal(env_id: str, env_cfg: EnvOptions) -> str | None:
    """Why env.vector_backend: native cannot play this game as configured (None: it can)."""
    if env_id != CARTPOLE_ID or not is_gymnasiums_cartpole(gym.spec(CARTPOLE_ID)):
        return f"env.vector_backend: native runs gymnasium's {CARTPOLE_ID} only, not '{env_id}'"
    options = {"env.kwargs": env_cfg.kwargs, "env.wrappers": env_cfg.wrappers, "env.pixels": env_cfg.pixels,
               "env.imports": env_cfg.imports}
    changed = [name for name, value in options.items() if value]
    if env_cfg.vectorization not in ("auto", "sync"):
        changed.append(f"env.vectorization: {env_cfg.vectorization}")
    if env_cfg.num_workers:
        changed.append("env.num_workers")
    if changed:
        return (
            f"env.vector_backend: native plays the plain game in this process; drop {', '.join(changed)} "
            "or use env.vector_backend: gymnasium"
        )
    return None


def _make_native(config: GameSpec, gamma: float) -> gym.vector.VectorEnv:
    """CartPole-v1 stepped in this process by envs/cartpole_vector.py: the same trajectories as the
    gymnasium backend's, without its per-env wrapper layers."""
    refusal = native_refusal(config.env_id, config.env)
    if refusal:
        raise ConfigError(refusal)
    return normalized(CartPoleVectorEnv(config.env.num_envs), config.env, gamma)


def finished_episodes(infos: dict) -> list[tuple[float, int]]:
    """(return, length) of each episode that ended in this vector step (SAME_STEP layout)."""
    final_info = infos.get("final_info", {})
    if "episode" not in final_info:
        return []
    stats, mask = final_info["episode"], final_info["_episode"]
    return [(float(stats["r"][i]), int(stats["l"][i])) for i in np.flatnonzero(mask)]
