"""Building agents from a config: device, network choice, precision."""

from __future__ import annotations

import gymnasium as gym
import torch

from agents.config import ConfigError, TrainConfig
from agents.networks.actor_critic import ActorCritic
from agents.networks.cnn import CNNActorCritic
from agents.networks.mlp import MLPActorCritic
from agents.networks.transformer import TransformerActorCritic


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was requested but torch sees no CUDA device (use auto or cpu)")
    return torch.device(name)


def is_token_space(observation_space: gym.Space, num_actions: int) -> bool:
    """Token envs observe a 1-D sequence over the same vocabulary their actions choose from."""
    return (
        isinstance(observation_space, gym.spaces.MultiDiscrete)
        and len(observation_space.shape) == 1
        and bool((observation_space.nvec == num_actions).all())
    )


def build_agent(config: TrainConfig, observation_space: gym.Space, num_actions: int) -> ActorCritic:
    """The actor-critic named by `network.kind` (auto: transformer for token sequences, Nature CNN
    for image stacks, MLP otherwise)."""
    net = config.network
    kind = net.kind
    if kind == "auto":
        if is_token_space(observation_space, num_actions):
            kind = "transformer"
        else:
            kind = "nature_cnn" if len(observation_space.shape) == 3 else "mlp"
    if kind == "mlp":
        return MLPActorCritic(
            observation_space, num_actions, net.hidden_sizes, net.activation, net.shared_trunk
        )
    if kind == "transformer":
        if not is_token_space(observation_space, num_actions):
            raise ConfigError(f"network.kind transformer needs a token env, got {observation_space}")
        return TransformerActorCritic.from_spaces(
            observation_space, num_actions, d_model=net.d_model, n_layers=net.n_layers, n_heads=net.n_heads,
            value_grad_scale=net.value_grad_scale,
        )
    if len(observation_space.shape) != 3:
        raise ConfigError(
            f"network.kind {kind} needs image observations (C, H, W), got {observation_space.shape}"
        )
    try:
        return CNNActorCritic(observation_space, num_actions, trunk=kind.removesuffix("_cnn"))
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

