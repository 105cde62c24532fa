"""An MLP actor-critic's forward and backward passes written out: as one autograd node
(TwoTrunkFunction, for any caller of the network), and without autograd at all for the PPO update,
which hands its loss's gradients to the network (two_trunk_outputs).

Why: on CartPole's PPO settings (a 64-64 tanh MLP per head, minibatches of 256) an update step is
bound by per-operation overhead, not arithmetic. Autograd records about thirty nodes for the two
trunks and heads and runs each backwards; here the forward pass runs without recording anything
and one function computes every parameter's gradient. Two more savings come with it: tanh is
evaluated by numpy where that is quicker (below), and a narrow layer's weight gradient is
multiplied the quicker way round (weight_gradient). The forward products are the ones autograd
would run (torch.nn.functional.linear), so a ReLU network's outputs are bitwise autograd's; its
gradients agree to float rounding.

For a trunk of layers l = 1..L with h₀ = x, z_l = h_{l−1} W_lᵀ + b_l, h_l = φ(z_l), and an output
y = h_L W_oᵀ + b_o, with δ = ∂L/∂y:
    ∂L/∂W_o = δᵀ h_L,   ∂L/∂b_o = Σ_batch δ,   ∂L/∂h_L = δ W_o
    δ_l = ∂L/∂h_l ⊙ φ'(z_l)   (tanh: 1 − h_l²; ReLU: [h_l > 0])
    ∂L/∂W_l = δ_lᵀ h_{l−1},   ∂L/∂b_l = Σ_batch δ_l,   ∂L/∂h_{l−1} = δ_l W_l
The observation needs no gradient, so the first layer's ∂L/∂h₀ is never computed.

tanh: torch 2.13's CPU build evaluates float32 tanh with Sleef at about 2.6 ns an element
whatever the CPU's vector width (43 µs for 256 × 64 on the AMD EPYC here, where sigmoid takes
8 µs); numpy's vectorised tanh takes 7 µs. The two agree to within an ulp or two.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from torch.autograd.function import once_differentiable

from agents.networks.actor_critic import Backprop, accumulate_gradient

ACTIVATIONS = ("tanh", "relu")


def tanh(z: torch.Tensor) -> torch.Tensor:
    """tanh(z); float32 CPU tensors through numpy's tanh (see the module docstring)."""
    if z.dtype == torch.float32 and z.device.type == "cpu":
        return torch.from_numpy(np.tanh(z.numpy()))
    return torch.tanh(z)


def activate(z: torch.Tensor, activation: str) -> torch.Tensor:
    return tanh(z) if activation == "tanh" else torch.relu(z)


def activation_backward(grad: torch.Tensor, h: torch.Tensor, activation: str) -> torch.Tensor:
    """∂L/∂z from ∂L/∂h and the layer's output h = φ(z): tanh' = 1 − h², ReLU' = [h > 0] (torch's
    own backward kernels, which take the output)."""
    if activation == "tanh":
        return torch.ops.aten.tanh_backward(grad, h)
    return torch.ops.aten.threshold_backward(grad, h, 0)


def trunk_forward(
    x: torch.Tensor, weights: Sequence[torch.Tensor], activation: str
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(the output layer's y, every hidden layer's h_l) for weights [W_1, b_1, ..., W_o, b_o]."""
    hidden = []
    h = x
    for i in range(0, len(weights) - 2, 2):
        h = activate(nn.functional.linear(h, weights[i], weights[i + 1]), activation)
        hidden.append(h)
    return nn.functional.linear(h, weights[-2], weights[-1]), hidden


def weight_gradient(delta: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """∂L/∂W = δᵀ h for δ of (batch, out) and h of (batch, in), computed the way round that puts the
    smaller of out and in first: MKL's sgemm is slow with a narrow right-hand side. For a first
    layer of 64 × 4, δᵀ h took 22 µs at a batch of 256 and 160 µs at 2048, (hᵀ δ)ᵀ 10 and 24 µs
    (one thread, the AMD EPYC here). Either way the sums are the same; their rounding may differ."""
    if inputs.shape[1] < delta.shape[1]:
        return inputs.t().mm(delta).t().contiguous()  # contiguous, as .grad and fused Adam expect
    return delta.t().mm(inputs)


def trunk_backward(
    delta: torch.Tensor,
    x: torch.Tensor,
    hidden: list[torch.Tensor],
    weights: Sequence[torch.Tensor],
    activation: str,
) -> list[torch.Tensor]:
    """[∂L/∂W_1, ∂L/∂b_1, ..., ∂L/∂W_o, ∂L/∂b_o] from δ = ∂L/∂y (the module docstring's formulas)."""
    inputs = [x, *hidden]  # h_{l−1} of each layer, the output layer's last
    gradients: list[torch.Tensor] = []
    for layer in range(len(inputs) - 1, -1, -1):
        weight = weights[2 * layer]
        gradients += [delta.sum(0), weight_gradient(delta, inputs[layer])]  # reversed below: W before b
        if layer:
            delta = activation_backward(delta.mm(weight), inputs[layer], activation)
    return gradients[::-1]


def both_trunks_forward(
    x: torch.Tensor,
    activation: str,
    policy_weights: Sequence[torch.Tensor],
    value_weights: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """(head, V(s) [B], the policy trunk's h_l, the value trunk's h_l)."""
    head, policy_hidden = trunk_forward(x, policy_weights, activation)
    value, value_hidden = trunk_forward(x, value_weights, activation)
    return head, value.squeeze(-1), policy_hidden, value_hidden


def both_trunks_backward(
    d_head: torch.Tensor,
    d_value: torch.Tensor,
    x: torch.Tensor,
    hidden: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]],
    weights: tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]],
    activation: str,
) -> list[torch.Tensor]:
    """Every parameter's gradient, the policy trunk's then the value trunk's, from ∂L/∂head and
    ∂L/∂V [B]; `hidden` and `weights` as (policy, value)."""
    gradients = trunk_backward(d_head, x, list(hidden[0]), weights[0], activation)
    return gradients + trunk_backward(d_value.unsqueeze(-1), x, list(hidden[1]), weights[1], activation)


class TwoTrunkFunction(torch.autograd.Function):
    """(head, V) of an MLP actor-critic with separate policy and value trunks; one autograd node
    whose backward returns every parameter's gradient."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, activation: str, policy_count: int, x: torch.Tensor, *weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        head, value, policy_hidden, value_hidden = both_trunks_forward(
            x, activation, weights[:policy_count], weights[policy_count:]
        )
        ctx.activation, ctx.policy_count, ctx.hidden_count = activation, policy_count, len(policy_hidden)
        ctx.save_for_backward(x, *weights, *policy_hidden, *value_hidden)
        return head, value

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_head: torch.Tensor, d_value: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        saved = ctx.saved_tensors
        count, hidden = ctx.policy_count, ctx.hidden_count
        x, weights, activations = saved[0], saved[1 : 1 + 2 * count], saved[1 + 2 * count :]
        hidden_pair = (activations[:hidden], activations[hidden:])
        gradients = both_trunks_backward(
            d_head, d_value, x, hidden_pair, (weights[:count], weights[count:]), ctx.activation
        )
        return None, None, None, *gradients


def trunk_weights(trunk: nn.Sequential, output: nn.Linear) -> list[torch.Tensor]:
    """[W_1, b_1, ..., W_o, b_o] of a trunk of Linear (with bias) + activation pairs and its output
    layer. Read from each module's parameter dict: through nn.Module's attribute lookup this took
    10 µs a trunk, as long as the trunk's forward pass at a rollout's batch of 8."""
    weights: list[torch.Tensor] = []
    for layer in [*trunk._modules.values(), output]:
        parameters = layer._parameters
        if parameters:  # the activations have none
            weights += (parameters["weight"], parameters["bias"])
    return weights


def two_trunk_forward(
    x: torch.Tensor,
    activation: str,
    policy: tuple[nn.Sequential, nn.Linear],
    value: tuple[nn.Sequential, nn.Linear],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(head, V(s)) through TwoTrunkFunction when autograd is recording, else the same forward pass
    with nothing kept for a backward pass."""
    policy_weights, value_weights = trunk_weights(*policy), trunk_weights(*value)
    if torch.is_grad_enabled():
        return TwoTrunkFunction.apply(activation, len(policy_weights), x, *policy_weights, *value_weights)
    head, values, _, _ = both_trunks_forward(x, activation, policy_weights, value_weights)
    return head, values


def two_trunk_outputs(
    x: torch.Tensor,
    activation: str,
    policy: tuple[nn.Sequential, nn.Linear],
    value: tuple[nn.Sequential, nn.Linear],
) -> tuple[torch.Tensor, torch.Tensor, Backprop]:
    """(head, V(s), backprop), ActorCritic.outputs_for_update's contract: TwoTrunkFunction's two
    passes without autograd's engine around them. Nothing is recorded; backprop(∂L/∂head, ∂L/∂V)
    runs trunk_backward for each trunk and adds the gradients of the parameters that require one
    into their .grad. The engine's share (the node, its inputs' edges, an AccumulateGrad call per
    parameter) was 165 µs of CartPole's 1 ms update step. The numbers are TwoTrunkFunction's."""
    policy_weights, value_weights = trunk_weights(*policy), trunk_weights(*value)
    with torch.no_grad():
        head, values, policy_hidden, value_hidden = both_trunks_forward(
            x, activation, policy_weights, value_weights
        )

    def backprop(d_head: torch.Tensor, d_value: torch.Tensor) -> None:
        with torch.no_grad():
            gradients = both_trunks_backward(
                d_head, d_value, x, (policy_hidden, value_hidden), (policy_weights, value_weights), activation
            )
        for parameter, gradient in zip([*policy_weights, *value_weights], gradients):
            if parameter.requires_grad:
                accumulate_gradient(parameter, gradient)

    return head, values, backprop
