"""Building agents from a config: device, network choice, precision."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from agents.config import ConfigError, TrainConfig
from agents.networks.actor_critic import ActorCritic
from agents.networks.cnn import NATURE_MIN_SIDE, CNNActorCritic
from agents.networks.mlp import MLPActorCritic
from agents.networks.multi_input import MultiInputActorCritic
from agents.networks.transformer import TransformerActorCritic
from envs.structured import StructuredBox


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was requested but torch sees no CUDA device (use auto or cpu)")
    return torch.device(name)


def is_token_space(observation_space: gym.Space, actions: gym.Space | int) -> bool:
    """Token envs observe a 1-D sequence over the same vocabulary their actions choose from."""
    num_actions = actions if isinstance(actions, (int, np.integer)) else getattr(actions, "n", None)
    return (
        isinstance(observation_space, gym.spaces.MultiDiscrete)
        and len(observation_space.shape) == 1
        and num_actions is not None
        and bool((observation_space.nvec == int(num_actions)).all())
    )


SUPPORTED_OBSERVATIONS = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)


def check_observation_space(space: gym.Space, path: str = "observation") -> None:
    """ConfigError naming the first part of `space` no network here reads, and where it is."""
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        raise ConfigError(
            f"{type(space).__name__} observations are not supported yet ({path} is {space}); "
            "flatten them with gymnasium.wrappers.FlattenObservation"
        )
    if not isinstance(space, SUPPORTED_OBSERVATIONS):
        raise ConfigError(
            f"observation space {space} at {path} is not supported "
            "(Box, Discrete, MultiDiscrete, MultiBinary are)"
        )


def build_agent(config: TrainConfig, observation_space: gym.Space, actions: gym.Space | int) -> ActorCritic:
    """The actor-critic named by `network.kind` (auto: transformer for token sequences, a CNN
    for image stacks (C, H, W): Nature CNN from 36 pixels a side, the small MinAtar CNN below;
    MLP otherwise), its action distribution chosen from `actions` (agents/networks/distributions.py)."""
    check_observation_space(observation_space)
    net = config.network
    kind = net.kind
    squash = net.squash == "tanh"
    if kind == "auto":
        if is_token_space(observation_space, actions):
            kind = "transformer"
        elif len(observation_space.shape or ()) == 3:
            kind = "nature_cnn" if min(observation_space.shape[1:]) >= NATURE_MIN_SIDE else "small_cnn"
        else:
            kind = "mlp"
    if isinstance(observation_space, StructuredBox) and kind in ("auto", "mlp"):
        return MultiInputActorCritic(observation_space, actions, net.hidden_sizes, net.activation, squash)
    if kind == "mlp":
        return MLPActorCritic(
            observation_space, actions, net.hidden_sizes, net.activation, net.shared_trunk, squash
        )
    if kind == "transformer":
        if not is_token_space(observation_space, actions):
            raise ConfigError(f"network.kind transformer needs a token env, got {observation_space}")
        return TransformerActorCritic.from_spaces(
            observation_space, int(getattr(actions, "n", actions)), d_model=net.d_model,
            n_layers=net.n_layers, n_heads=net.n_heads, value_grad_scale=net.value_grad_scale,
        )
    if len(observation_space.shape or ()) != 3:
        raise ConfigError(
            f"network.kind {kind} needs image observations (C, H, W), got {observation_space.shape}"
        )
    try:
        return CNNActorCritic(observation_space, actions, trunk=kind.removesuffix("_cnn"), squash=squash)
    except ValueError as exc:
        raise ConfigError(f"network.kind {kind}: {exc}") from None


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # AVX512-BF16 / AMX on this CPU


def resolve_precision(precision: str, agent: ActorCritic, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for the network, or None for plain float32.

    auto picks bf16 for convolutional networks where the hardware computes it natively (it
    doubles the learner's speed on these CPUs) and fp32 for small MLPs, which gain nothing.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        if not bf16_supported(device):
            raise ConfigError(f"precision: bf16 was requested but this {device.type} has no native bf16")
        return torch.bfloat16
    return torch.bfloat16 if isinstance(agent, CNNActorCritic) and bf16_supported(device) else None

