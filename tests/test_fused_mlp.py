"""agents/networks/fused_mlp.py: the MLP actor-critic's written-out passes against autograd through
its nn.Linear / activation modules (ReLU: outputs bit for bit, gradients to float rounding, as some
weight gradients are multiplied the other way round; tanh: numpy's tanh, to float rounding)."""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.networks.fused_mlp import tanh, weight_gradient
from agents.networks.mlp import MLPActorCritic

SPACES = {
    "box": (gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2)),
    "discrete obs": (gym.spaces.Discrete(5), gym.spaces.Discrete(3)),
    "gaussian": (gym.spaces.Box(-1, 1, (3,)), gym.spaces.Box(-1, 1, (2,))),
}


def networks(activation: str, hidden: list[int], space: str = "box") -> tuple[MLPActorCritic, MLPActorCritic]:
    """A network and a copy that always takes the module path (autograd)."""
    torch.manual_seed(0)
    fused = MLPActorCritic(*SPACES[space], hidden, activation)
    reference = copy.deepcopy(fused)
    reference.takes_fused_passes = lambda x: False
    return fused, reference


def observations(space: str, count: int = 256) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    if space == "discrete obs":
        return torch.randint(0, 5, (count,), generator=generator)
    return torch.randn(count, SPACES[space][0].shape[0], generator=generator)


def forward_backward(network: MLPActorCritic, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(head, V, every parameter's gradient) for fixed incoming gradients."""
    head, value = network(obs)
    generator = torch.Generator().manual_seed(2)
    d_head = torch.randn(head.shape, generator=generator)
    d_value = torch.randn(value.shape, generator=generator)
    network.zero_grad(set_to_none=True)
    torch.autograd.backward([head, value], [d_head, d_value])
    return head.detach(), value.detach(), *(p.grad for p in network.parameters() if p.grad is not None)


@pytest.mark.parametrize("space", list(SPACES))
@pytest.mark.parametrize("hidden", [[64, 64], [16], [8, 16, 8]])
def test_relu_passes_match_autograd(space, hidden, one_torch_thread):
    fused, reference = networks("relu", hidden, space)
    obs = observations(space)
    got, expected = forward_backward(fused, obs), forward_backward(reference, obs)
    assert fused(obs)[0].grad_fn.name() == "TwoTrunkFunctionBackward"  # the path under test ran
    assert len(got) == len(expected) == 2 + len(list(fused.parameters())) - (space == "gaussian")
    for mine, theirs in zip(got[:2], expected[:2]):  # the head and V(s): the same products
        assert torch.equal(mine, theirs)
    for mine, theirs in zip(got[2:], expected[2:]):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("space", list(SPACES))
def test_tanh_passes_match_autograd_to_float_rounding(space, one_torch_thread):
    fused, reference = networks("tanh", [64, 64], space)
    obs = observations(space)
    for mine, theirs in zip(forward_backward(fused, obs), forward_backward(reference, obs)):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    with torch.inference_mode():  # rollouts: the same passes, nothing recorded
        for mine, theirs in zip(fused(obs[:8]), reference(obs[:8])):
            torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)


def test_numpy_tanh_agrees_with_torch_to_an_ulp_or_two():
    values = np.concatenate([
        np.linspace(-20, 20, 200_001, dtype=np.float32),
        np.array([0.0, -0.0, 1e-30, -1e-30, np.inf, -np.inf], dtype=np.float32),
    ])
    x = torch.from_numpy(values)
    ours, torchs = tanh(x), torch.tanh(x)
    ulps = (ours.view(torch.int32).long() - torchs.view(torch.int32).long()).abs()
    assert ulps.max() <= 2
    assert torch.isnan(tanh(torch.tensor([float("nan")]))).all()
    assert torch.equal(tanh(x.double()), torch.tanh(x.double()))  # not float32: torch's own


def test_frozen_layers_get_no_gradient_and_the_rest_autograds(one_torch_thread):
    fused, reference = networks("relu", [32, 32])
    for network in (fused, reference):
        network.policy_trunk[0].requires_grad_(False)
    obs = observations("box")
    for mine, theirs in zip(forward_backward(fused, obs), forward_backward(reference, obs)):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-6)
    assert fused.policy_trunk[0].weight.grad is None


def test_what_the_written_out_passes_leave_out_takes_the_module_path(one_torch_thread):
    torch.manual_seed(0)
    shared = MLPActorCritic(*SPACES["box"], [16, 16], "tanh", shared_trunk=True)
    obs = observations("box", 8)
    assert not shared.takes_fused_passes(obs)
    fused, _ = networks("tanh", [16, 16])
    assert fused.takes_fused_passes(obs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused.takes_fused_passes(obs)
        assert fused(obs)[0].dtype == torch.bfloat16  # autocast's casts happened
    saliency = obs.clone().requires_grad_()
    assert not fused.takes_fused_passes(saliency)
    fused(saliency)[0].sum().backward()
    assert saliency.grad is not None and saliency.grad.abs().sum() > 0


@pytest.mark.parametrize("batch", [1, 256, 2048])
@pytest.mark.parametrize("shape", [(64, 4), (4, 64), (2, 64), (64, 64)])
def test_weight_gradients_either_way_round_are_the_products_sums(shape, batch):
    """∂L/∂W = δᵀ h, whichever way round weight_gradient multiplies, against float64."""
    out_features, in_features = shape
    generator = torch.Generator().manual_seed(batch)
    delta = torch.randn(batch, out_features, generator=generator)
    inputs = torch.randn(batch, in_features, generator=generator)
    got = weight_gradient(delta, inputs)
    assert got.shape == shape
    torch.testing.assert_close(got.double(), delta.double().t() @ inputs.double(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_the_updates_backprop_gives_autograds_gradients_and_adds_up(activation, one_torch_thread):
    """outputs_for_update's backprop (no autograd engine) against autograd through the modules:
    the same outputs, the same gradients; frozen layers get none; a second call adds."""
    fused, reference = networks(activation, [64, 64])
    for network in (fused, reference):
        network.value_trunk[2].requires_grad_(False)
    obs = observations("box")
    expected = forward_backward(reference, obs)
    head, value, backprop = fused.outputs_for_update(obs)
    assert head.grad_fn is None and value.grad_fn is None  # nothing recorded
    generator = torch.Generator().manual_seed(2)  # forward_backward's incoming gradients
    d_head = torch.randn(head.shape, generator=generator)
    d_value = torch.randn(value.shape, generator=generator)
    backprop(d_head, d_value)
    got = (head, value, *(p.grad for p in fused.parameters() if p.grad is not None))
    assert len(got) == len(expected)
    for mine, theirs in zip(got, expected):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6)
    assert fused.value_trunk[2].weight.grad is None
    first = [p.grad.clone() for p in fused.parameters() if p.grad is not None]
    backprop(d_head, d_value)
    for before, parameter in zip(first, (p for p in fused.parameters() if p.grad is not None)):
        torch.testing.assert_close(parameter.grad, 2 * before)


def test_networks_without_written_out_passes_backprop_through_autograd(one_torch_thread):
    torch.manual_seed(0)
    shared = MLPActorCritic(*SPACES["box"], [16, 16], "tanh", shared_trunk=True)
    obs = observations("box", 32)
    head, value, backprop = shared.outputs_for_update(obs)
    backprop(torch.ones_like(head), torch.ones_like(value))
    expected_head, expected_value = shared(obs)
    assert torch.equal(head, expected_head.detach()) and torch.equal(value, expected_value.detach())
    grads = [p.grad.clone() for p in shared.parameters()]
    shared.zero_grad(set_to_none=True)
    (expected_head.sum() + expected_value.sum()).backward()
    for mine, parameter in zip(grads, shared.parameters()):
        assert torch.equal(mine, parameter.grad)


def test_a_subclass_with_its_own_forward_is_trained_on_that_forward(one_torch_thread):
    """outputs_for_update computes this class's forward; a subclass's own goes through autograd."""

    class Doubled(MLPActorCritic):
        def forward(self, obs):
            head, value = super().forward(obs)
            return 2 * head, value

    torch.manual_seed(0)
    network = Doubled(*SPACES["box"], [16, 16], "tanh")
    obs = observations("box", 32)
    head, _, backprop = network.outputs_for_update(obs)
    assert torch.equal(head, network(obs)[0].detach())
    backprop(torch.ones_like(head), torch.zeros(32))
    assert network.policy_head.weight.grad is not None
