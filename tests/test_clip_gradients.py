"""Global-norm gradient clipping with its non-finite check, against numbers computed by hand."""

import pytest
import torch
from torch import nn

from agents.core.update import NonFiniteGradient, clip_gradients


def parameters_with_gradients(*gradients: list[float]) -> list[tuple[str, nn.Parameter]]:
    named = []
    for number, gradient in enumerate(gradients):
        parameter = nn.Parameter(torch.zeros(len(gradient)))
        parameter.grad = torch.tensor(gradient)
        named.append((f"layer{number}.weight", parameter))
    return named


def test_gradients_above_the_norm_are_scaled_onto_it():
    named = parameters_with_gradients([3.0], [0.0, 4.0])  # ‖g‖₂ = 5
    clip_gradients(named, max_norm=1.0)
    scale = 1.0 / (5.0 + 1e-6)
    assert named[0][1].grad.tolist() == pytest.approx([3.0 * scale])
    assert named[1][1].grad.tolist() == pytest.approx([0.0, 4.0 * scale])


def test_gradients_within_the_norm_are_left_alone():
    named = parameters_with_gradients([0.3], [0.4])  # ‖g‖₂ = 0.5
    clip_gradients(named, max_norm=1.0)
    assert named[0][1].grad.tolist() == pytest.approx([0.3])
    assert named[1][1].grad.tolist() == pytest.approx([0.4])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_non_finite_gradient_is_named_and_no_gradient_is_scaled(bad):
    named = parameters_with_gradients([3.0], [4.0, bad], [float("nan")])
    with pytest.raises(NonFiniteGradient) as error:
        clip_gradients(named, max_norm=1.0)
    assert error.value.parameter == "layer1.weight"  # the first in module order
    assert named[0][1].grad.tolist() == [3.0]  # untouched: still shows where the NaN came from


def test_parameters_without_gradients_are_skipped():
    named = parameters_with_gradients([3.0], [4.0])
    named[1][1].grad = None
    clip_gradients(named, max_norm=1.0)
    assert named[0][1].grad.tolist() == pytest.approx([3.0 / (3.0 + 1e-6)])


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_same_gradients_as_torch_clip_grad_norm(max_norm):
    generator = torch.Generator().manual_seed(0)
    shapes = [(64, 4), (64,), (64, 64), (2, 64), (1,)]
    ours = [nn.Parameter(torch.zeros(shape)) for shape in shapes]
    theirs = [nn.Parameter(torch.zeros(shape)) for shape in shapes]
    for mine, reference in zip(ours, theirs):
        mine.grad = torch.randn(mine.shape, generator=generator)
        reference.grad = mine.grad.clone()
    clip_gradients([(str(n), p) for n, p in enumerate(ours)], max_norm)
    nn.utils.clip_grad_norm_(theirs, max_norm)
    for mine, reference in zip(ours, theirs):
        assert torch.equal(mine.grad, reference.grad)
