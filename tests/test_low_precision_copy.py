"""The low-precision copy that forward passes without gradients run on under autocast
(ActorCritic.low_precision_copy): the same numbers as autocast on the float32 network, bit for bit,
and never stale after the weights change.
"""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.networks.cnn import CNNActorCritic
from agents.networks.mlp import MLPActorCritic
from agents.networks.transformer import TransformerActorCritic

BOX_ACTIONS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def nature_cnn():
    return CNNActorCritic(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), 4), torch.randint(
        0, 256, (4, 4, 84, 84), dtype=torch.uint8
    )


def small_cnn_gaussian():
    # A Box action space: the Gaussian's log σ is a parameter outside any Linear layer.
    space = gym.spaces.Box(0, 1, (4, 10, 10), np.float32)
    return CNNActorCritic(space, BOX_ACTIONS, trunk="small"), torch.rand(5, 4, 10, 10)


def mlp_gaussian():
    space = gym.spaces.Box(-10.0, 10.0, (6,), np.float32)
    return MLPActorCritic(space, BOX_ACTIONS, [64, 64], "tanh"), torch.randn(7, 6)


def transformer():
    return TransformerActorCritic(11, 8, d_model=32, n_layers=2, n_heads=4), torch.randint(1, 11, (3, 8))


NETWORKS = [nature_cnn, small_cnn_gaussian, mlp_gaussian, transformer]


def bf16_network(make):
    torch.manual_seed(0)
    agent, obs = make()
    agent.autocast_dtype = torch.bfloat16
    return agent, obs


def with_gradients(agent, obs):
    """The forward autocast computes on the float32 weights (the learner's path)."""
    with torch.enable_grad():
        head, value = agent.logits_and_value(obs)
    return head.detach(), value.detach()


def assert_same(a, b):
    for x, y in zip(a, b):
        assert x.dtype == y.dtype == torch.float32
        assert torch.equal(x, y)


@pytest.mark.parametrize("make", NETWORKS)
def test_copy_computes_what_autocast_computes(make, one_torch_thread):
    agent, obs = bf16_network(make)
    with torch.inference_mode():
        rollout = agent.logits_and_value(obs)
    assert_same(rollout, with_gradients(agent, obs))
    with torch.no_grad():
        assert_same(agent.logits_and_value(obs), rollout)
    # The copy is what ran: its layers see the calls.
    twin = agent.low_precision_copy()
    calls = []
    first_layer = next(m for m in twin.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
    first_layer.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        agent.logits_and_value(obs)
    assert calls
    # The copy holds the layers' weights in bf16 and leaves the other parameters alone.
    assert twin is not agent and twin is agent.low_precision_copy()  # made once per weight change
    dtypes = {name: p.dtype for name, p in twin.named_parameters()}
    assert torch.bfloat16 in dtypes.values()
    for name, dtype in dtypes.items():
        if name.endswith("log_std"):
            assert dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in agent.parameters())
    assert not any("low_precision" in key for key in agent.state_dict())
    # A deep copy (RLHF's frozen reference is one) does not carry the copy along.
    assert copy.deepcopy(agent).__dict__["_low_precision"] is None
    assert agent.low_precision_copy() is twin
    agent.eval()  # layers that act differently in eval mode would need a copy in that mode
    assert agent.low_precision_copy() is not twin and not agent.low_precision_copy().training
    evaluated = agent.low_precision_copy()
    agent.autocast_dtype = torch.float16
    assert agent.low_precision_copy() is not evaluated


@pytest.mark.parametrize("make", [nature_cnn, mlp_gaussian, transformer])
def test_copy_follows_every_weight_change(make, one_torch_thread):
    agent, obs = bf16_network(make)
    with torch.no_grad():
        before = agent.logits_and_value(obs)

    # A fused Adam step (the trainer's optimizer) bumps no version counter.
    optimizer = torch.optim.Adam(agent.parameters(), lr=0.05, fused=True)
    head, value = agent.logits_and_value(obs)
    (head.square().sum() + value.square().sum()).backward()
    optimizer.step()
    with torch.no_grad():
        after_step = agent.logits_and_value(obs)
    assert not torch.equal(after_step[0], before[0])
    assert_same(after_step, with_gradients(agent, obs))

    # A checkpoint loaded in place.
    other, _ = make()
    agent.load_state_dict(other.state_dict())
    with torch.no_grad():
        assert_same(agent.logits_and_value(obs), with_gradients(agent, obs))

    # A write that bypasses autograd's bookkeeping, then reset_cache.
    with torch.no_grad():
        agent.low_precision_copy()
        for p in agent.parameters():
            p.data.mul_(0.5)
        agent.reset_cache()
        assert_same(agent.logits_and_value(obs), with_gradients(agent, obs))


def test_no_copy_without_autocast(one_torch_thread):
    torch.manual_seed(0)
    agent, obs = mlp_gaussian()
    with torch.no_grad():
        agent.logits_and_value(obs)
    assert agent.__dict__.get("_low_precision") is None
