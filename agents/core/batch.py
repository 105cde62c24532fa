"""The batch every collector hands to the PPO update: flat tensors, one row per sample."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Batch:
    """Samples (s, a) with what the update needs of the policy that played them.

    `episode`, `ref_logp` and `action_masks` are optional: a collector sets them when its samples
    need them.
    """

    obs: torch.Tensor  # s, as the env emitted it (uint8 frames stay uint8)
    actions: torch.Tensor  # a
    logp: torch.Tensor  # log π_old(a|s)
    values: torch.Tensor  # V_old(s) (zeros without a critic)
    advantages: torch.Tensor  # Â
    returns: torch.Tensor  # value targets R = Â + V_old (zeros without a critic)
    # An id per sample, equal within one episode: minibatches are then made of whole episodes, so
    # that a sequence model evaluates each sequence once (agents/networks/transformer.py).
    episode: torch.Tensor | None = None
    ref_logp: torch.Tensor | None = None  # log π_ref(a|s), for the KL-to-reference loss term
    action_masks: torch.Tensor | None = None  # valid actions of s (bool [B, n]), for masked games

    def __len__(self) -> int:
        return int(self.actions.shape[0])
