"""Features extractors that give Stable-Baselines3 the networks ours picks where SB3 has no
built-in one: images smaller than the Nature CNN's 36 pixels (MiniGrid's 7×7 view, MinAtar's
10×10 grids) go through the small MinAtar CNN (agents/networks/cnn.py small_trunk)."""

from __future__ import annotations

import gymnasium as gym
import torch
from stable_baselines3.common.preprocessing import get_flattened_obs_dim, is_image_space
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from torch import nn

from agents.networks.cnn import NATURE_MIN_SIDE, small_trunk

IMAGE_FEATURES = 256


class SmallCNN(BaseFeaturesExtractor):
    """One 3×3 convolution of 16 channels, then a ReLU layer, on a (C, H, W) image (SB3 has
    already transposed and scaled it)."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = IMAGE_FEATURES) -> None:
        super().__init__(observation_space, features_dim)
        conv, features = small_trunk(*observation_space.shape)
        self.net = nn.Sequential(conv, nn.Linear(features, features_dim), nn.ReLU())

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.net(observations)


class SizedCombinedExtractor(BaseFeaturesExtractor):
    """SB3's CombinedExtractor, with the small CNN for images under NATURE_MIN_SIDE pixels."""

    def __init__(self, observation_space: gym.spaces.Dict) -> None:
        super().__init__(observation_space, features_dim=1)
        extractors: dict[str, nn.Module] = {}
        total = 0
        for key, space in observation_space.spaces.items():
            if is_image_space(space):
                small = min(space.shape[1:]) < NATURE_MIN_SIDE
                extractors[key] = (SmallCNN if small else NatureCNN)(space, IMAGE_FEATURES)
                total += IMAGE_FEATURES
            else:
                extractors[key] = nn.Flatten()
                total += get_flattened_obs_dim(space)
        self.extractors = nn.ModuleDict(extractors)
        self._features_dim = total

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([extractor(observations[key]) for key, extractor in self.extractors.items()], dim=1)
