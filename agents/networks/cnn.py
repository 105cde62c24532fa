"""Actor-critics for stacked pixel frames: the Nature DQN CNN and the IMPALA ResNet trunk."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from agents.networks.actor_critic import ActorCritic, layer_init


def nature_trunk(in_channels: int) -> tuple[nn.Module, int]:
    """Mnih et al. 2015: three convolutions then a 512-unit layer; expects 84×84 inputs."""
    trunk = nn.Sequential(
        layer_init(nn.Conv2d(in_channels, 32, 8, stride=4)),
        nn.ReLU(),
        layer_init(nn.Conv2d(32, 64, 4, stride=2)),
        nn.ReLU(),
        layer_init(nn.Conv2d(64, 64, 3, stride=1)),
        nn.ReLU(),
        nn.Flatten(),
    )
    return trunk, 64 * 7 * 7

class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = layer_init(nn.Conv2d(channels, channels, 3, padding=1))
        self.conv1 = layer_init(nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))

def impala_trunk(
    in_channels: int, size: int, channels: tuple[int, ...] = (16, 32, 32)
) -> tuple[nn.Module, int]:
    """Espeholt et al. 2018: per stage conv → 3×3 max-pool stride 2 → two residual blocks."""
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers += [
            layer_init(nn.Conv2d(in_channels, out_channels, 3, padding=1)),
            nn.MaxPool2d(3, stride=2, padding=1),
            _ResidualBlock(out_channels),
            _ResidualBlock(out_channels),
        ]
        in_channels = out_channels
        size = (size + 1) // 2
    layers += [nn.ReLU(), nn.Flatten()]
    return nn.Sequential(*layers), in_channels * size * size

class CNNActorCritic(ActorCritic):
    """Shared convolutional trunk → 512-unit ReLU layer → policy and value heads.

    Observations are uint8 frames (C, H, W) as stored in the rollout; they are scaled by 1/255
    here, inside the network, so storage stays uint8 (4× smaller than float32).
    """

    def __init__(self, observation_space: gym.Space, num_actions: int, trunk: str = "nature") -> None:
        super().__init__()
        channels, height, width = observation_space.shape
        if trunk == "nature":
            if (height, width) != (84, 84):
                raise ValueError(f"the Nature CNN expects 84×84 frames, got {height}×{width}")
            conv, features = nature_trunk(channels)
        elif trunk == "impala":
            conv, features = impala_trunk(channels, height)
        else:
            raise ValueError(f"unknown CNN trunk {trunk!r}")
        self.trunk = nn.Sequential(conv, layer_init(nn.Linear(features, 512)), nn.ReLU())
        self.policy_head = layer_init(nn.Linear(512, num_actions), 0.01)
        self.value_head = layer_init(nn.Linear(512, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Under bf16 autocast the frames go uint8 → bf16 directly: the same values as
        # bf16(fp32(x) / 255), without the fp32 copy, its division and autocast's cast of it
        # (together 1/6 of the Breakout learner's time in the torch profiler).
        device = obs.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
        hidden = self.trunk(obs.to(dtype) / 255.0)
        return self.policy_head(hidden), self.value_head(hidden).squeeze(-1)
