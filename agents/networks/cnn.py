"""Actor-critics for image observations (C, H, W): the Nature DQN CNN, the small MinAtar CNN and the
IMPALA ResNet trunk."""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from agents.networks.actor_critic import ActorCritic, layer_init
from agents.networks.distributions import distribution_for

NATURE_MIN_SIDE = 36  # the Nature trunk's three convolutions need frames at least this wide
SMALL_CNN_HIDDEN = 128  # units of the ReLU layer after the small (MinAtar) trunk, as in the MinAtar paper


def _conv_out(size: int, kernel: int, stride: int) -> int:
    return (size - kernel) // stride + 1


def nature_trunk(in_channels: int, height: int = 84, width: int = 84) -> tuple[nn.Module, int]:
    """Mnih et al. 2015: three convolutions (8×8/4, 4×4/2, 3×3/1), made for 84×84 frames."""
    trunk = nn.Sequential(
        layer_init(nn.Conv2d(in_channels, 32, 8, stride=4)),
        nn.ReLU(),
        layer_init(nn.Conv2d(32, 64, 4, stride=2)),
        nn.ReLU(),
        layer_init(nn.Conv2d(64, 64, 3, stride=1)),
        nn.ReLU(),
        nn.Flatten(),
    )
    side = [_conv_out(_conv_out(_conv_out(n, 8, 4), 4, 2), 3, 1) for n in (height, width)]
    return trunk, 64 * side[0] * side[1]


def small_trunk(in_channels: int, height: int, width: int) -> tuple[nn.Module, int]:
    """Young & Tian 2019 (MinAtar): one 3×3 convolution of 16 channels, stride 1, for small grids."""
    trunk = nn.Sequential(layer_init(nn.Conv2d(in_channels, 16, 3, stride=1)), nn.ReLU(), nn.Flatten())
    return trunk, 16 * _conv_out(height, 3, 1) * _conv_out(width, 3, 1)

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
    """Shared convolutional trunk → a ReLU layer (512 units; 128 after the small trunk) → policy
    and value heads.

    Observations are uint8 frames (C, H, W) as stored in the rollout; they are scaled by 1/255
    here, inside the network, so storage stays uint8 (4× smaller than float32).
    """

    def __init__(
        self,
        observation_space: gym.Space,
        actions: gym.Space | int,
        trunk: str = "nature",
        squash: bool = False,
    ) -> None:
        super().__init__()
        self.distribution = distribution_for(actions, squash)
        channels, height, width = observation_space.shape
        hidden = 512
        if trunk == "nature":
            if min(height, width) < NATURE_MIN_SIDE:
                raise ValueError(
                    f"the Nature CNN needs frames of at least {NATURE_MIN_SIDE}×{NATURE_MIN_SIDE}, got "
                    f"{height}×{width} (network.kind small_cnn serves small grids)"
                )
            conv, features = nature_trunk(channels, height, width)
        elif trunk == "small":
            conv, features = small_trunk(channels, height, width)
            hidden = SMALL_CNN_HIDDEN
        elif trunk == "impala":
            conv, features = impala_trunk(channels, height)
        else:
            raise ValueError(f"unknown CNN trunk {trunk!r}")
        self.trunk = nn.Sequential(conv, layer_init(nn.Linear(features, hidden)), nn.ReLU())
        self.policy_head = layer_init(nn.Linear(hidden, self.distribution.head_size), 0.01)
        self.value_head = layer_init(nn.Linear(hidden, 1), 1.0)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Under bf16 autocast the frames go uint8 → bf16 directly: the same values as
        # bf16(fp32(x) / 255), without the fp32 copy, its division and autocast's cast of it
        # (together 1/6 of the Breakout learner's time in the torch profiler).
        device = obs.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
        hidden = self.trunk(obs.to(dtype) / 255.0)
        return self.policy_head(hidden), self.value_head(hidden).squeeze(-1)
