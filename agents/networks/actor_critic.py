"""The actor-critic interface that the PPO core trains, shared by every network of the toolkit."""

from __future__ import annotations

import copy
import math
from typing import Callable

import torch
from torch import nn

from agents.networks.distributions import ActionDistribution, CategoricalDistribution
from agents.networks.optimizer_steps import parameter_fingerprint, start_counting

# The layers whose weights autocast casts to its low-precision dtype at every call.
AUTOCAST_CAST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

# backprop(∂L/∂head, ∂L/∂V): adds ∂L/∂θ of the network's parameters θ into their .grad.
Backprop = Callable[[torch.Tensor, torch.Tensor], None]


def accumulate_gradient(parameter: torch.Tensor, gradient: torch.Tensor) -> None:
    """parameter.grad += gradient; with no .grad yet, `gradient` itself becomes it (so it must be a
    tensor of its own, of the parameter's dtype, contiguous). Unlike autograd's AccumulateGrad this
    neither casts nor copies into the parameter's layout, and calls none of the parameter's hooks."""
    if parameter.grad is None:
        parameter.grad = gradient
    else:
        parameter.grad.add_(gradient)


def layer_init(layer: nn.Module, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weight initialisation with the given gain and a constant bias.

    Gains used throughout (Huang et al. 2022): √2 for hidden layers, 0.01 for the policy head (so
    the first policy is close to uniform), 1.0 for the value head.
    """
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


class ActorCritic(nn.Module):
    """A policy π(a|s) and a value V(s) computed from one observation batch.

    Subclasses set `distribution` (agents/networks/distributions.py, from the action space) and
    implement `forward(obs) -> (action head [B, distribution.head_size], value [B])`; this class
    turns that into the calls the PPO core makes: `act` during rollouts, `value` for
    bootstrapping, and inside the update `outputs_for_update` (the loss differentiated by hand)
    or `evaluate_actions` (through autograd). `mask` [B, n] (Discrete actions) rules out invalid
    actions: probability 0, no share of the entropy.
    """

    distribution: ActionDistribution

    def __init__(self) -> None:
        super().__init__()
        # Subclasses set their own from the action space; by default, a categorical over
        # whatever logits forward returns.
        self.distribution = CategoricalDistribution()

    # bf16 autocast for the network's forward (set by the trainer from `precision`); the
    # distribution, log-probs and losses always stay in float32.
    autocast_dtype: torch.dtype | None = None

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def outputs_for_update(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Backprop]:
        """(head, V(s), backprop) for an update that differentiates its loss by hand down to the
        head and V(s) (agents/core/loss_gradients.py): the two outputs carry no graph, and
        backprop(∂L/∂head, ∂L/∂V) adds every parameter's gradient into its .grad. Here through
        autograd; a network may compute the gradients itself (MLPActorCritic)."""
        head, value = self.logits_and_value(obs)

        def backprop(head_gradient: torch.Tensor, value_gradient: torch.Tensor) -> None:
            torch.autograd.backward([head, value], [head_gradient, value_gradient])

        return head.detach(), value.detach(), backprop

    def logits_and_value(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """forward(obs), under autocast when `autocast_dtype` is set, returned as float32.

        Without gradients (rollouts, evaluation) the forward runs on `low_precision_copy()`:
        the same numbers, without casting every weight again at every call."""
        if self.autocast_dtype is None:
            return self(obs)
        network = self if torch.is_grad_enabled() else self.low_precision_copy()
        with torch.autocast(obs.device.type, dtype=self.autocast_dtype):
            logits, value = network(obs)
        return logits.float(), value.float()

    def low_precision_copy(self) -> nn.Module:
        """A copy of this network whose Linear and Conv weights are already in `autocast_dtype`,
        made again whenever the weights may have changed (parameter_fingerprint), the network
        switched between train() and eval() (the copy carries the mode it was made in) or
        `autocast_dtype` changed.

        Autocast casts a layer's float32 weights at each call (its cache lasts one autocast
        block, and none at all under inference mode). A rollout's forward passes are small, so
        that cast was a fifth of each one's time (Nature CNN at batch 4). An input already in the
        low-precision dtype is used as is, so the copy computes exactly what autocast computes
        on the original; the other parameters (a Gaussian's log σ) stay float32 as they are used.
        """
        start_counting()
        fingerprint = (parameter_fingerprint(self), self.training, self.autocast_dtype)
        cached = self.__dict__.get("_low_precision")
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        with torch.inference_mode(False), torch.no_grad():
            twin = copy.deepcopy(self)
            twin.reset_cache()  # what the original computed from its weights (a KV cache) is not needed
            for layer in twin.modules():
                if isinstance(layer, AUTOCAST_CAST_LAYERS):
                    layer.to(self.autocast_dtype)
            twin.requires_grad_(False)
        # Kept in __dict__, out of the module tree: not a submodule, not in the state dict.
        self.__dict__["_low_precision"] = (fingerprint, twin)
        return twin

    def __getstate__(self) -> dict:
        # Deep copies (the twin itself, RLHF's frozen reference) and pickles leave the copy behind:
        # it is remade from the weights when first needed.
        return {**super().__getstate__(), "_low_precision": None}

    def reset_cache(self) -> None:
        """Forget what was computed from the weights; needed only after writes to them that
        parameter_fingerprint cannot see (through `p.data`, or a collective into the storage)."""
        self.__dict__["_low_precision"] = None

    def act(
        self, obs: torch.Tensor, deterministic: bool = False, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample a ~ π(·|s) (or take the mode); return (action, log π(a|s), V(s))."""
        head, value = self.logits_and_value(obs)
        action, logp = self.distribution.sample(head, deterministic, mask)
        return action, logp, value

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.logits_and_value(obs)[1]

    def evaluate_actions(
        self, obs: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (log π(a|s), entropy of π(·|s), V(s)) for stored observations and actions."""
        head, value = self.logits_and_value(obs)
        logp, entropy = self.distribution.log_prob_and_entropy(head, actions, mask)
        return logp, entropy, value
