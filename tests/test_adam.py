"""agents/core/adam.py against torch.optim.Adam(fused=True): the same weights and state, bit for bit,
through annealed learning rates, parameters without gradients, state dicts and the cases it hands
back to torch's own step."""

import copy

import pytest
import torch

from agents.core.adam import Adam
from agents.networks.optimizer_steps import optimizer_steps, start_counting

SHAPES = [(64, 4), (64,), (64, 64), (64,), (2, 64), (2,), (1, 64), (1,)]


def twin_parameters() -> tuple[list[torch.nn.Parameter], list[torch.nn.Parameter]]:
    generator = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in SHAPES]
    return ours, [torch.nn.Parameter(p.detach().clone()) for p in ours]


def train_both(ours_opt, torch_opt, ours, theirs, steps: int, skip: int | None = None) -> None:
    generator = torch.Generator().manual_seed(1)
    for step in range(steps):
        for number, (mine, reference) in enumerate(zip(ours, theirs)):
            gradient = torch.randn(mine.shape, generator=generator)
            skipped = skip is not None and number == skip and step % 3 == 1
            mine.grad, reference.grad = (None, None) if skipped else (gradient, gradient.clone())
        for optimizer in (ours_opt, torch_opt):
            optimizer.param_groups[0]["lr"] = 1e-3 * (1 - step / steps)  # annealed, as in training
        ours_opt.step()
        torch_opt.step()


def assert_same(ours_opt, torch_opt, ours, theirs) -> None:
    for mine, reference in zip(ours, theirs):
        assert torch.equal(mine, reference)
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(ours_opt.state[mine][key], torch_opt.state[reference][key]), key


@pytest.mark.parametrize("options", [{}, {"weight_decay": 0.01, "betas": (0.8, 0.99)}, {"amsgrad": True}])
def test_same_steps_as_torchs_fused_adam(options):
    ours, theirs = twin_parameters()
    ours_opt = Adam(ours, lr=1e-3, eps=1e-5, **options)
    torch_opt = torch.optim.Adam(theirs, lr=1e-3, eps=1e-5, fused=True, **options)
    train_both(ours_opt, torch_opt, ours, theirs, steps=30, skip=2)
    assert_same(ours_opt, torch_opt, ours, theirs)
    assert ours_opt.state[ours[2]]["step"] < ours_opt.state[ours[0]]["step"]  # the skipped one lags


def test_state_dicts_cross_over_both_ways():
    ours, theirs = twin_parameters()
    ours_opt, torch_opt = Adam(ours, lr=1e-3), torch.optim.Adam(theirs, lr=1e-3, fused=True)
    train_both(ours_opt, torch_opt, ours, theirs, steps=5)
    # Swap the optimizers' states: each goes on from the other's as if it had been its own.
    ours_state, torch_state = ours_opt.state_dict(), torch_opt.state_dict()
    ours_opt.load_state_dict(torch_state)
    torch_opt.load_state_dict(ours_state)
    train_both(ours_opt, torch_opt, ours, theirs, steps=5)
    assert_same(ours_opt, torch_opt, ours, theirs)


def test_the_short_step_runs_and_step_hooks_fire_once_per_step():
    ours, _ = twin_parameters()
    optimizer = Adam(ours, lr=1e-3)
    start_counting()
    for p in ours:
        p.grad = torch.ones_like(p)
    before = optimizer_steps()
    optimizer.step()  # creates the state: torch's own step
    assert optimizer._plain_group(optimizer.param_groups[0]) is not None  # from now on, the short one
    optimizer.step()
    assert optimizer_steps() == before + 2
    assert optimizer.state[ours[0]]["step"] == 2


def test_a_loaded_non_fused_state_keeps_the_non_fused_arithmetic():
    """A checkpoint of a plain (non-fused) Adam carries fused=None into the groups; torch's step then
    runs the per-tensor path, and so must ours."""
    ours, theirs = twin_parameters()
    plain = torch.optim.Adam([torch.nn.Parameter(p.detach().clone()) for p in ours], lr=1e-3)
    for p in plain.param_groups[0]["params"]:
        p.grad = torch.ones_like(p)
    plain.step()
    ours_opt, torch_opt = Adam(ours, lr=1e-3), torch.optim.Adam(theirs, lr=1e-3)
    ours_opt.load_state_dict(copy.deepcopy(plain.state_dict()))  # loading keeps the state's tensors:
    torch_opt.load_state_dict(copy.deepcopy(plain.state_dict()))  # one copy each, or they share them
    assert not ours_opt.param_groups[0]["fused"]
    train_both(ours_opt, torch_opt, ours, theirs, steps=20)
    assert_same(ours_opt, torch_opt, ours, theirs)
