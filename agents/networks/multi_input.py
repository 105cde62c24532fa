"""Actor-critic for Dict and Tuple observations (envs/structured.py's flat vector): a CNN per
image entry, every other entry as the flat vector gymnasium gives it (one-hot Discrete...), all
concatenated into one feature vector, then separate policy and value MLPs, as Stable-Baselines3's
CombinedExtractor + MultiInputPolicy do."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from agents.networks.actor_critic import ActorCritic, layer_init
from agents.networks.cnn import NATURE_MIN_SIDE, nature_trunk, small_trunk
from agents.networks.distributions import distribution_for
from agents.networks.mlp import input_scale, mlp
from envs.images import is_channels_last, is_image_space
from envs.structured import StructuredBox, leaves

IMAGE_FEATURES = 256  # per image entry, as SB3's CombinedExtractor


class _ImageEntry(nn.Module):
    """One image entry of the flat vector: cut, reshaped to (C, H, W), scaled to [0, 1], a CNN."""

    def __init__(self, space: gym.spaces.Box, start: int) -> None:
        super().__init__()
        self.start, self.stop, self.shape = start, start + int(np.prod(space.shape)), tuple(space.shape)
        self.channels_last = is_channels_last(space)
        channels, height, width = (self.shape[2], *self.shape[:2]) if self.channels_last else self.shape
        self.scale = input_scale(space)
        trunk = nature_trunk if min(height, width) >= NATURE_MIN_SIDE else small_trunk
        conv, features = trunk(channels, height, width)
        self.net = nn.Sequential(conv, layer_init(nn.Linear(features, IMAGE_FEATURES)), nn.ReLU())

    def forward(self, flat: torch.Tensor) -> torch.Tensor:
        image = flat[:, self.start : self.stop].reshape(-1, *self.shape)
        if self.channels_last:
            image = image.permute(0, 3, 1, 2)
        return self.net(image * self.scale)


class MultiInputActorCritic(ActorCritic):
    def __init__(
        self,
        observation_space: StructuredBox,
        actions: gym.Space | int,
        hidden_sizes: list[int],
        activation: str = "tanh",
        squash: bool = False,
    ) -> None:
        super().__init__()
        self.distribution = distribution_for(actions, squash)
        images, vector_slices, start = [], [], 0
        for _, space in leaves(observation_space.structure):
            size = gym.spaces.flatdim(space)
            if is_image_space(space):
                images.append(_ImageEntry(space, start))
            else:
                vector_slices.append(torch.arange(start, start + size))
            start += size
        self.images = nn.ModuleList(images)
        vector = torch.cat(vector_slices) if vector_slices else torch.zeros(0, dtype=torch.long)
        self.register_buffer("vector_index", vector, persistent=False)
        sizes = [IMAGE_FEATURES * len(images) + len(vector), *hidden_sizes]
        self.policy_trunk, self.value_trunk = mlp(sizes, activation), mlp(sizes, activation)
        self.policy_head = layer_init(nn.Linear(sizes[-1], self.distribution.head_size), 0.01)
        self.value_head = layer_init(nn.Linear(sizes[-1], 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = obs.float()
        features = torch.cat([image(flat) for image in self.images] + [flat[:, self.vector_index]], dim=1)
        return self.policy_head(self.policy_trunk(features)), self.value_head(
            self.value_trunk(features)
        ).squeeze(-1)
