"""Playing the current policy in a vector env to fill one rollout segment."""

from __future__ import annotations

from typing import Callable

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
    device = storage.obs.device
    for step in range(storage.num_steps):
        storage.obs[step] = obs
        mask = storage.next_mask
        action, logp, value = agent.act(obs, mask=mask)
        storage.actions[step], storage.logp[step], storage.values[step] = action, logp, value
        next_obs, reward, terminated, truncated, infos = envs.step(agent.distribution.to_env(action))
        if mask is not None:
            storage.action_masks[step] = mask
            storage.next_mask = action_mask_of(infos, device)
        if not bootstrap_truncated:
            terminated, truncated = terminated | truncated, np.zeros_like(truncated)
        storage.rewards[step] = torch.as_tensor(reward, device=device)
        storage.terminated[step] = torch.as_tensor(terminated, device=device)
        storage.truncated[step] = torch.as_tensor(truncated, device=device)
        storage.final_values[step] = 0.0
        bootstrap = np.flatnonzero(truncated & ~terminated)
        if bootstrap.size:
            final_obs = np.stack(infos["final_obs"][bootstrap])
            storage.final_values[step, bootstrap] = agent.value(obs_to_tensor(final_obs, device))
        on_step_infos(infos)
        obs = obs_to_tensor(next_obs, device)
    return obs
