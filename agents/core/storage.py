"""Preallocated storage for one fixed-length rollout segment of a vector env."""

from __future__ import annotations

import torch

from agents.core.batch import Batch
from agents.core.gae import compute_gae


class RolloutStorage:
    """Tensors of shape [num_steps, num_envs, ...], allocated once and overwritten every segment.

    Observations keep the dtype the env emits (uint8 pixels stay uint8: 4× less memory than float;
    networks scale them). Row t holds s_t, a_t, log π_old(a_t|s_t), V(s_t), r_t, whether the
    episode ended at t (terminated / truncated) and V(final obs) for truncated episodes. Actions
    have the distribution's shape and dtype (integers, or floats for Box). With `mask_size`, row t
    also holds the valid-action mask of s_t, and `next_mask` the mask of the observation after it.
    """

    def __init__(
        self,
        num_steps: int,
        num_envs: int,
        obs_shape: tuple[int, ...],
        obs_dtype: torch.dtype,
        device: torch.device,
        action_shape: tuple[int, ...] = (),
        action_dtype: torch.dtype = torch.long,
        mask_size: int | None = None,
    ) -> None:
        shape = (num_steps, num_envs)
        self.num_steps = num_steps
        self.obs = torch.zeros(shape + tuple(obs_shape), dtype=obs_dtype, device=device)
        self.actions = torch.zeros(shape + tuple(action_shape), dtype=action_dtype, device=device)
        self.action_masks = (
            None if mask_size is None else torch.ones(shape + (mask_size,), dtype=torch.bool, device=device)
        )
        self.next_mask = (
            None if mask_size is None else torch.ones((num_envs, mask_size), dtype=torch.bool, device=device)
        )
        self.logp = torch.zeros(shape, device=device)
        self.values = torch.zeros(shape, device=device)
        self.rewards = torch.zeros(shape, device=device)
        self.terminated = torch.zeros(shape, device=device)
        self.truncated = torch.zeros(shape, device=device)
        self.final_values = torch.zeros(shape, device=device)
        self.advantages = torch.zeros(shape, device=device)
        self.returns = torch.zeros(shape, device=device)

    def compute_advantages(self, next_value: torch.Tensor, gamma: float, gae_lambda: float) -> None:
        """Fill `advantages` and `returns` by GAE(γ, λ), bootstrapping from V(s_T) = next_value."""
        self.advantages, self.returns = compute_gae(
            self.rewards,
            self.values,
            self.terminated,
            self.truncated,
            self.final_values,
            next_value,
            gamma,
            gae_lambda,
        )

    def episode_ids(self) -> torch.Tensor:
        """[T, N] ids, equal for the steps of one episode within the segment, distinct otherwise:
        env n's count of episode ends before step t, interleaved across envs."""
        ended = torch.clamp(self.terminated + self.truncated, max=1).long()
        ended_before = torch.cumsum(ended, dim=0) - ended
        num_envs = ended.shape[1]
        return ended_before * num_envs + torch.arange(num_envs, device=ended.device)

    def flatten(self, with_episodes: bool = False) -> Batch:
        """The segment as one batch of num_steps × num_envs samples for the PPO update; with
        `with_episodes`, each sample carries its episode id (for sequence models)."""
        names = ("obs", "actions", "logp", "values", "advantages", "returns")
        batch = Batch(**{name: getattr(self, name).flatten(0, 1) for name in names})
        if self.action_masks is not None:
            batch.action_masks = self.action_masks.flatten(0, 1)
        if with_episodes:
            batch.episode = self.episode_ids().flatten()
        return batch
