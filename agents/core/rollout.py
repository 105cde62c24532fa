"""Playing the current policy in a vector env to fill one rollout segment."""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np
import torch

from agents.core.storage import RolloutStorage
from agents.networks.actor_critic import ActorCritic


def obs_to_tensor(obs: np.ndarray, device: torch.device) -> torch.Tensor:
    # One copy from the env's array straight to the device, in the env's own dtype.
    return torch.as_tensor(obs, device=device)


def action_mask_of(infos: dict, device: torch.device) -> torch.Tensor:
    """The valid-action masks a vector env reports in infos["action_mask"] (gymnasium's
    convention, on reset and on every step; with SAME_STEP autoreset, the mask of the returned
    observation) as bool [N, n]."""
    return torch.as_tensor(np.asarray(infos["action_mask"], dtype=bool), device=device)


@torch.inference_mode()
def collect_rollout(
    agent: ActorCritic,
    envs: gym.vector.VectorEnv,
    storage: RolloutStorage,
    obs: torch.Tensor,
    on_step_infos: Callable[[dict], None],
    bootstrap_truncated: bool = True,
) -> torch.Tensor:
    """Fill `storage` with one segment played by `agent`, starting from `obs`; return the
    observation after the segment.

    For an episode truncated at step t, V(its real final observation, from info["final_obs"])
    is stored in final_values[t] for GAE's bootstrap. With `bootstrap_truncated=False` a
    truncation is recorded as a termination instead: for games whose length cap is one of the
    rules (a completion is scored at the cap, nothing follows), V after the end is 0.
    """
    every_env = slice(None)
    for step in range(storage.num_steps):
        actions = _choose(agent, storage, step, every_env, obs)
        result = envs.step(actions)
        obs = _record(agent, storage, step, every_env, result, bootstrap_truncated)
        on_step_infos(result[4])
    return obs


RolloutFn = Callable[..., torch.Tensor]


def on_one_torch_thread(play: RolloutFn) -> RolloutFn:
    """`play` (collect_rollout's signature) with its forward passes on one torch intra-op thread.

    For rollouts whose env stepping runs in worker processes at the same time as the policy: a
    policy spread over several threads keeps them spinning for a core after each op while a worker
    holds it (MinAtar SpaceInvaders, 2 workers of 32 envs on 2 cores: two threads made it
    0.73-0.88x one thread; README, "Many processes, many machines")."""

    @functools.wraps(play)
    def played(*args: Any, **kwargs: Any) -> torch.Tensor:
        with torch_threads(1):
            return play(*args, **kwargs)

    return played


@on_one_torch_thread
@torch.inference_mode()
def collect_rollout_overlapped(
    agent: ActorCritic,
    envs: Any,
    storage: RolloutStorage,
    obs: torch.Tensor,
    on_step_infos: Callable[[dict], None],
    bootstrap_truncated: bool = True,
) -> torch.Tensor:
    """collect_rollout for an env in two groups (envs/overlap.py: `group_slices`,
    `step_group_async`, `step_group_wait`): while group A's workers play step t, the policy
    picks group B's actions for step t, and while B plays, A's for step t + 1. The segment holds
    the same rows as collect_rollout's; only the forward passes are split in two, and they run on
    one torch thread (on_one_torch_thread: the other group's workers hold the cores meanwhile).
    """
    a, b = envs.group_slices
    obs_a, obs_b = obs[a], obs[b]
    pending: set[int] = set()  # groups whose step was sent and not yet received

    def send(group: int, actions: Any) -> None:
        envs.step_group_async(group, actions)
        pending.add(group)

    def receive(group: int) -> tuple:
        pending.discard(group)  # a wait that raises leaves nothing to collect
        return envs.step_group_wait(group)

    try:
        send(0, _choose(agent, storage, 0, a, obs_a))
        for step in range(storage.num_steps):
            send(1, _choose(agent, storage, step, b, obs_b))  # while A steps
            result = receive(0)
            obs_a = _record(agent, storage, step, a, result, bootstrap_truncated)
            if step + 1 < storage.num_steps:  # the next segment's first actions come from the next weights
                send(0, _choose(agent, storage, step + 1, a, obs_a))  # while B steps
            on_step_infos(result[4])
            result = receive(1)
            obs_b = _record(agent, storage, step, b, result, bootstrap_truncated)
            on_step_infos(result[4])
    except Exception:
        # A stop request or a failure midway: collect the steps still under way, so that the workers
        # are idle when the trainer closes them (the segment is thrown away anyway).
        for group in pending:
            try:
                envs.step_group_wait(group)
            except Exception:  # the first error is the one to report
                pass
        raise
    return torch.cat([obs_a, obs_b])


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to `count` inside the block, restored after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _choose(
    agent: ActorCritic, storage: RolloutStorage, step: int, envs: slice, obs: torch.Tensor
) -> Any:
    """a_t ~ π(·|s_t) for the envs in `envs`, stored with s_t, log π(a_t|s_t), V(s_t) and the
    valid-action mask of s_t; returned in the env's own form."""
    mask = None if storage.next_mask is None else storage.next_mask[envs]
    action, logp, value = agent.act(obs, mask=mask)
    storage.obs[step, envs] = obs
    storage.actions[step, envs], storage.logp[step, envs], storage.values[step, envs] = action, logp, value
    if mask is not None:
        storage.action_masks[step, envs] = mask
    return agent.distribution.to_env(action)


def _record(
    agent: ActorCritic,
    storage: RolloutStorage,
    step: int,
    envs: slice,
    result: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict],
    bootstrap_truncated: bool,
) -> torch.Tensor:
    """Store what a vector step of the envs in `envs` returned (r_t, the episode ends, the
    bootstrap values of truncations, the next mask); return s_{t+1} as a tensor."""
    device = storage.obs.device
    next_obs, reward, terminated, truncated, infos = result
    if storage.next_mask is not None:
        storage.next_mask[envs] = action_mask_of(infos, device)
    if not bootstrap_truncated:
        terminated, truncated = terminated | truncated, np.zeros_like(truncated)
    storage.rewards[step, envs] = torch.as_tensor(reward, device=device)
    storage.terminated[step, envs] = torch.as_tensor(terminated, device=device)
    storage.truncated[step, envs] = torch.as_tensor(truncated, device=device)
    storage.final_values[step, envs] = 0.0
    bootstrap = np.flatnonzero(truncated & ~terminated)
    if bootstrap.size:
        final_obs = np.stack(infos["final_obs"][bootstrap])
        storage.final_values[step, envs][bootstrap] = agent.value(obs_to_tensor(final_obs, device))
    return obs_to_tensor(next_obs, device)
