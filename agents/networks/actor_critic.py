"""The actor-critic interface that the PPO core trains, shared by every network of the toolkit."""

from __future__ import annotations

import math

import torch
from torch import nn


def layer_init(layer: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weight initialisation with the given gain and a constant bias.

    Gains used throughout (Huang et al. 2022): √2 for hidden layers, 0.01 for the policy head (so
    the first policy is close to uniform), 1.0 for the value head.
    """
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def sample_action(logits: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """a ~ softmax(logits) (argmax if deterministic) per row → (a, log π(a|s)).

    Written out instead of torch.distributions.Categorical (same numbers, same draws from the
    same generator state) to skip its per-call argument checks; every network shares it.
    """
    log_probs = logits.log_softmax(dim=-1)
    if deterministic:
        action = logits.argmax(dim=-1)
    else:
        action = torch.multinomial(log_probs.exp(), 1).squeeze(-1)
    return action, log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)


def log_prob_and_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(a|s), H(π(·|s)) = −Σ_a π(a|s) log π(a|s)) per row of `logits` for integer `actions`.

    A masked logit (the dtype's minimum, e.g. the transformer's PAD) has π = 0 exactly and adds
    0 · (finite) = 0 to the entropy.
    """
    log_probs = logits.log_softmax(dim=-1)
    logp = log_probs.gather(-1, actions.long().reshape(-1, 1)).squeeze(-1)
    return logp, -(log_probs.exp() * log_probs).sum(dim=-1)


class ActorCritic(nn.Module):
    """A categorical policy π(a|s) and a value V(s) computed from one observation batch.

    Subclasses implement `forward(obs) -> (logits [B, A], value [B])`; this class turns that into
    the three calls the PPO core makes: `act` during rollouts, `value` for bootstrapping and
    `evaluate_actions` inside the update.
    """

    # bf16 autocast for the network's forward (set by the trainer from `precision`); the
    # distribution, log-probs and losses always stay in float32.
    autocast_dtype: torch.dtype | None = None

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def logits_and_value(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward(obs), under autocast when `autocast_dtype` is set, returned as float32."""
        if self.autocast_dtype is None:
            return self(obs)
        with torch.autocast(obs.device.type, dtype=self.autocast_dtype):
            logits, value = self(obs)
        return logits.float(), value.float()

    def act(
        self, obs: torch.Tensor, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample a ~ π(·|s) (or take argmax); return (action, log π(a|s), V(s))."""
        logits, value = self.logits_and_value(obs)
        action, logp = sample_action(logits, deterministic)
        return action, logp, value

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits_and_value(obs)[1]

    def evaluate_actions(
        self, obs: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (log π(a|s), entropy of π(·|s), V(s)) for stored observations and actions."""
        logits, value = self.logits_and_value(obs)
        logp, entropy = log_prob_and_entropy(logits, actions)
        return logp, entropy, value
