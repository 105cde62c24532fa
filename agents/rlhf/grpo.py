"""GRPO (Shao et al. 2024, arXiv 2402.03300): group-relative advantages instead of a critic."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from agents.core.batch import Batch
from agents.networks.actor_critic import ActorCritic


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-6) -> tuple[torch.Tensor, float]:
    """Â_i = (r_i − mean(r_group)) / (std(r_group) + eps) for consecutive groups of `group_size`.

    std is the sample standard deviation (n − 1), as in the common implementations. A group whose
    rewards are all equal gives Â = 0 for all its completions: it carries no learning signal, so
    the share of such groups is returned too (a useful health signal: 1.0 means nothing is learnt).
    """
    groups = rewards.reshape(-1, group_size)
    mean = groups.mean(dim=1, keepdim=True)
    std = groups.std(dim=1, keepdim=True)
    advantages = ((groups - mean) / (std + eps)).reshape(-1)
    zero_spread = float((groups.max(dim=1).values == groups.min(dim=1).values).float().mean())
    return advantages, zero_spread


@dataclass
class GroupRollout:
    """One round of generation: every env completed one episode."""

    batch: Batch  # flat over generated tokens, an episode id per token
    rewards: torch.Tensor  # [num_envs] final reward of each completion
    lengths: list[int]
    zero_spread_share: float
    texts: list[str] = field(default_factory=list)


@torch.inference_mode()
def collect_groups(
    agent: ActorCritic,
    envs: list[gym.Env],
    group_size: int,
    rng: np.random.Generator,
    device: torch.device,
) -> GroupRollout:
    """Sample `group_size` completions for each of len(envs) / group_size prompts.

    The first env of each group draws the prompt (seeded from `rng`); the others are reset onto
    the same prompt. All rows are generated as one batch until every completion has ended; rows
    that finished early keep their final observation (the transformer's KV cache serves them
    at no cost) and their extra actions are discarded.
    """
    num_envs = len(envs)
    observations = []
    for start in range(0, num_envs, group_size):
        first, _ = envs[start].reset(seed=int(rng.integers(2**31 - 1)))
        prompt = first[first != 0].tolist()  # PAD (0) never occurs inside a sequence
        observations.append(first)
        observations += [
            envs[i].reset(options={"prompt": prompt})[0] for i in range(start + 1, start + group_size)
        ]
    active = np.ones(num_envs, dtype=bool)
    rewards = np.zeros(num_envs, dtype=np.float32)
    lengths = [0] * num_envs
    texts: list[str] = []
    steps: dict[str, list[torch.Tensor]] = {"obs": [], "actions": [], "logp": [], "episode": []}
    while active.any():
        obs = torch.as_tensor(np.stack(observations), device=device)
        actions, logp, _ = agent.act(obs)
        rows = torch.as_tensor(np.flatnonzero(active), device=device)
        steps["obs"].append(obs[rows])
        steps["actions"].append(actions[rows])
        steps["logp"].append(logp[rows])
        steps["episode"].append(rows)
        for i in rows.tolist():
            observations[i], reward, terminated, truncated, info = envs[i].step(int(actions[i]))
            lengths[i] += 1
            if terminated or truncated:
                active[i] = False
                rewards[i] = reward
                texts.append(f"{info.get('prompt_text', '')} → {info.get('text', '')}")
    tokens = {name: torch.cat(values) for name, values in steps.items()}
    reward_tensor = torch.as_tensor(rewards, device=device)
    advantages, zero_spread = group_advantages(reward_tensor, group_size)
    # No critic (config checks refuse a value loss with algo grpo): zero values and returns keep
    # the batch layout of the PPO core.
    no_critic = torch.zeros_like(tokens["logp"])
    batch = Batch(
        tokens["obs"], tokens["actions"], tokens["logp"], no_critic, advantages[tokens["episode"]], no_critic,
        episode=tokens["episode"],
    )
    return GroupRollout(batch, reward_tensor, lengths, zero_spread, texts)
