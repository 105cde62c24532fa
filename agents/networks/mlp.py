"""Actor-critic MLP for vector (Box) or discrete observations."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.networks.actor_critic import ActorCritic, Backprop, layer_init
from agents.networks.distributions import distribution_for
from agents.networks.fused_mlp import ACTIVATIONS as FUSED_ACTIVATIONS
from agents.networks.fused_mlp import two_trunk_forward, two_trunk_outputs
from envs.images import is_image_space

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers of the given widths, each orthogonally initialised (gain √2) and activated."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [layer_init(nn.Linear(n_in, n_out), math.sqrt(2)), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


def input_scale(space: gym.Space) -> float:
    """The factor that brings an observation to [0, 1] before a network: 1/255 for uint8 images
    (frames, or MinAtar's planes as 0/255), 1 for everything else (bool planes are 0/1 already; a
    uint8 vector such as Atari RAM is numbers, not pixels). SB3 likewise scales image spaces for
    any policy."""
    return 1 / 255.0 if is_image_space(space) and space.dtype == np.uint8 else 1.0


class MLPActorCritic(ActorCritic):
    """π(a|s) and V(s) from a flat observation.

    Discrete observations are one-hot encoded (an integer id carries no order); uint8 images
    (`network.kind: mlp` on frames or MinAtar's 0/255 planes) are flattened and scaled by 1/255, as
    the CNNs scale them, so that a lit pixel reads 1.0 rather than 255. With
    `shared_trunk=False` the policy and the value have separate hidden layers, which is what
    works best on classic-control tasks; heads are initialised with gains 0.01 and 1.0.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        actions: gym.Space | int,
        hidden_sizes: list[int],
        activation: str = "tanh",
        shared_trunk: bool = False,
        squash: bool = False,
    ) -> None:
        super().__init__()
        self.distribution = distribution_for(actions, squash)
        if isinstance(observation_space, gym.spaces.Discrete):
            self.num_categories: int | None = int(observation_space.n)
            in_features = self.num_categories
        else:
            self.num_categories = None
            in_features = int(np.prod(observation_space.shape))
        self.input_scale = input_scale(observation_space)
        self.activation = activation
        sizes = [in_features, *hidden_sizes]
        self.policy_trunk = mlp(sizes, activation)
        self.value_trunk = self.policy_trunk if shared_trunk else mlp(sizes, activation)
        self.policy_head = layer_init(nn.Linear(sizes[-1], self.distribution.head_size), 0.01)
        self.value_head = layer_init(nn.Linear(sizes[-1], 1), 1.0)

    def _features(self, obs: torch.Tensor) -> torch.Tensor:
        if self.num_categories is not None:
            return nn.functional.one_hot(obs.long().reshape(-1), self.num_categories).float()
        flat = obs.reshape(obs.shape[0], -1).float()
        # no multiply by 1 on vector observations: CartPole's update is bound by per-op overhead
        return flat * self.input_scale if self.input_scale != 1.0 else flat

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._features(obs)
        if self.takes_fused_passes(x):
            return two_trunk_forward(
                x, self.activation, (self.policy_trunk, self.policy_head), (self.value_trunk, self.value_head)
            )
        return self.policy_head(self.policy_trunk(x)), self.value_head(self.value_trunk(x)).squeeze(-1)

    def outputs_for_update(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Backprop]:
        x = self._features(obs)
        if self._runs_own_passes() and torch.is_grad_enabled() and self.takes_fused_passes(x):
            return two_trunk_outputs(
                x, self.activation, (self.policy_trunk, self.policy_head), (self.value_trunk, self.value_head)
            )
        return super().outputs_for_update(obs)

    def _runs_own_passes(self) -> bool:
        """Whether outputs_for_update may compute what forward would: no autocast, and neither
        forward nor logits_and_value changed by a subclass (the written-out passes are this class's
        forward)."""
        cls = type(self)
        return (
            self.autocast_dtype is None
            and cls.forward is MLPActorCritic.forward
            and cls.logits_and_value is ActorCritic.logits_and_value
        )

    def takes_fused_passes(self, x: torch.Tensor) -> bool:
        """Whether forward runs agents/networks/fused_mlp.py's written-out passes: separate trunks,
        and none of what they leave out: autocast (its casts happen per nn.Linear call), gradients
        for the input itself, torch.compile's tracing (numpy inside). Forward hooks on the layers
        are not called on that path, nor, in the PPO update (outputs_for_update), the parameters'
        gradient hooks."""
        return (
            self.value_trunk is not self.policy_trunk
            and self.activation in FUSED_ACTIVATIONS
            and not x.requires_grad
            and not torch.is_autocast_enabled(x.device.type)
            and not torch.compiler.is_compiling()
        )
