"""The PPO loss differentiated by hand (agents/core/loss_gradients.py, and the categorical head's
part in agents/networks/distributions.py) against autograd.

The reference is torch's own differentiation of agents/core/loss.py's ppo_loss on
log_prob_and_entropy: every branch of the loss (clipped surrogate or KL penalty, value clipping,
entropy bonus, masked actions) and the ties where torch.min / torch.max split their gradient.
"""

from __future__ import annotations

from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.config import PPOConfig
from agents.core import update
from agents.core.batch import Batch
from agents.core.loss import ppo_loss
from agents.core.loss_gradients import TorchOps, ppo_loss_gradients
from agents.networks.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    MultiCategoricalDistribution,
    log_prob_and_entropy,
    masked_logits,
)
from agents.networks.mlp import MLPActorCritic
from agents.networks.transformer import TransformerActorCritic

B, N = 64, 5


def _case(seed: int, masked: bool, ties: bool) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    head = torch.randn(B, N, generator=generator, dtype=torch.float64)
    mask = torch.rand(B, N, generator=generator) > 0.3 if masked else None
    probs = masked_logits(head, mask).softmax(-1)
    actions = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
    logp = masked_logits(head, mask).log_softmax(-1).gather(-1, actions[:, None]).squeeze(-1)
    values = torch.randn(B, generator=generator, dtype=torch.float64)
    if ties:  # the first step of an update: π = π_old, V = V_old, so r = 1 and V − V_old = 0
        old_logp, old_values = logp.clone(), values.clone()
    else:
        old_logp = logp + 0.3 * torch.randn(B, generator=generator, dtype=torch.float64)
        old_values = values + 0.3 * torch.randn(B, generator=generator, dtype=torch.float64)
    return dict(
        head=head, mask=mask, actions=actions, old_logp=old_logp, values=values, old_values=old_values,
        advantages=torch.randn(B, generator=generator, dtype=torch.float64),
        returns=values + torch.randn(B, generator=generator, dtype=torch.float64),
    )


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("ent_coef", [0.0, 0.01])
@pytest.mark.parametrize("clip_value_loss", [False, True])
@pytest.mark.parametrize("kl_coef", [None, 0.2])
def test_same_loss_and_head_gradients_as_autograd(ties, masked, ent_coef, clip_value_loss, kl_coef):
    case = _case(seed=7, masked=masked, ties=ties)
    coefs = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=ent_coef, clip_value_loss=clip_value_loss,
                 kl_coef=kl_coef)
    head = case["head"].clone().requires_grad_()
    values = case["values"].clone().requires_grad_()
    logits = masked_logits(head, case["mask"])
    logp, entropy = log_prob_and_entropy(logits, case["actions"])
    reference = ppo_loss(logp, case["old_logp"], case["advantages"], values, case["old_values"],
                         case["returns"], entropy, **coefs)
    d_head, d_values = torch.autograd.grad(reference.loss, [head, values])

    scores = CategoricalDistribution().scores(head.detach(), case["actions"], case["mask"])
    terms, d_logp, d_entropy, d_values_ours = ppo_loss_gradients(
        scores.logp, case["old_logp"], case["advantages"], values.detach(), case["old_values"],
        case["returns"], scores.entropy, **coefs,
    )
    torch.testing.assert_close(scores.head_gradient(d_logp, d_entropy), d_head, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(d_values_ours, d_values, rtol=1e-10, atol=1e-12)
    for name in ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction"):
        expected = getattr(reference, name).detach()
        torch.testing.assert_close(getattr(terms, name), expected, rtol=1e-12, atol=0)


def test_the_branches_are_exercised():
    """The random case has samples on both sides of the clip, so the comparison covers them."""
    case = _case(seed=7, masked=False, ties=False)
    ratio = (case["head"].log_softmax(-1).gather(-1, case["actions"][:, None]).squeeze(-1)
             - case["old_logp"]).exp()
    outside = (ratio - 1).abs() > 0.2
    assert 0 < int(outside.sum()) < B
    step = case["values"] - case["old_values"]
    assert 0 < int((step.abs() > 0.2).sum()) < B


def _distribution_case(kind: str, generator: torch.Generator):
    """(distribution, head, actions, mask) with random numbers, float64."""
    if kind in ("categorical", "masked categorical"):
        head = torch.randn(B, N, generator=generator, dtype=torch.float64)
        mask = torch.rand(B, N, generator=generator) > 0.3 if kind == "masked categorical" else None
        probs = masked_logits(head, mask).softmax(-1)
        return CategoricalDistribution(), head, torch.multinomial(probs, 1, generator=generator)[:, 0], mask
    if kind == "multi-categorical":
        head = torch.randn(B, 5, generator=generator, dtype=torch.float64)
        actions = torch.stack([torch.randint(0, 2, (B,), generator=generator),
                               torch.randint(0, 3, (B,), generator=generator)], -1)
        return MultiCategoricalDistribution([2, 3]), head, actions, None
    if kind == "bernoulli":
        head = 3 * torch.randn(B, 4, generator=generator, dtype=torch.float64)
        return BernoulliDistribution(4), head, torch.randint(0, 2, (B, 4), generator=generator), None
    squash = kind == "squashed gaussian"
    gaussian = DiagGaussianDistribution(np.full((2, 3), -1.0), np.full((2, 3), 1.0), squash=squash).double()
    with torch.no_grad():
        gaussian.log_std.copy_(0.3 * torch.randn(6, generator=generator, dtype=torch.float64))
    head = torch.randn(B, 2, 3, generator=generator, dtype=torch.float64)
    return gaussian, head, head + torch.randn(B, 2, 3, generator=generator, dtype=torch.float64), None


KINDS = ["categorical", "masked categorical", "multi-categorical", "bernoulli", "gaussian",
         "squashed gaussian"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_entropy", [False, True])
def test_each_distribution_carries_a_loss_of_logp_and_entropy_back_to_its_head(kind, with_entropy):
    """head_gradient / parameter_gradients(∂L/∂ log π, ∂L/∂H) for L = Σ w·log π + u·H with random
    weights w, u (|u| small, as PPO's c_e/B: at a masked logit autograd's own backward overflows
    to NaN once |u| > 1), against autograd of log_prob_and_entropy."""
    generator = torch.Generator().manual_seed(5)
    distribution, head, actions, mask = _distribution_case(kind, generator)
    weights = torch.randn(B, generator=generator, dtype=torch.float64)
    entropy_weights = 0.01 * torch.randn(B, generator=generator, dtype=torch.float64)
    entropy_weights = entropy_weights if with_entropy else None
    head = head.clone().requires_grad_()
    logp, entropy = distribution.log_prob_and_entropy(head, actions, mask)
    loss = (weights * logp).sum() + ((entropy_weights * entropy).sum() if with_entropy else 0.0)
    own = list(distribution.parameters())
    expected = torch.autograd.grad(loss, [head, *own], allow_unused=True)

    assert distribution.closed_form
    scores = distribution.scores(head.detach(), actions, mask)
    torch.testing.assert_close(scores.logp, logp.detach(), rtol=0, atol=0)
    torch.testing.assert_close(scores.entropy, entropy.detach(), rtol=0, atol=0)
    ours = scores.head_gradient(weights, entropy_weights)
    torch.testing.assert_close(ours, expected[0], rtol=1e-10, atol=1e-12)
    ours_own = dict((id(p), g) for p, g in scores.parameter_gradients(weights, entropy_weights))
    assert set(ours_own) == {id(p) for p in own}
    for parameter, gradient in zip(own, expected[1:]):
        torch.testing.assert_close(ours_own[id(parameter)], gradient, rtol=1e-10, atol=1e-12)


ACTION_SPACES = {
    "discrete": gym.spaces.Discrete(3),
    "multi-discrete": gym.spaces.MultiDiscrete([2, 3]),
    "multi-binary": gym.spaces.MultiBinary(3),
    "box": gym.spaces.Box(-1.0, 1.0, (2,), np.float32),
}


@pytest.mark.parametrize("space", ACTION_SPACES)
def test_an_update_in_closed_form_takes_the_autograd_update_step(space, monkeypatch):
    """ppo_update through the closed form and through autograd of ppo_loss (forced) from the same
    weights and batch: the same weights after 2 epochs × 2 minibatches, the log σ of a Gaussian
    included, and the same logged terms."""
    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    config = PPOConfig(update_epochs=2, num_minibatches=2, ent_coef=0.01, clip_value_loss=True)
    generator = torch.Generator().manual_seed(0)
    obs = torch.randn(B, 4, generator=generator)
    results = []
    for closed_form in (True, False):
        torch.manual_seed(0)
        agent = MLPActorCritic(observation_space, ACTION_SPACES[space], [16, 16])
        with torch.no_grad():
            actions, logp, values = agent.act(obs)
        advantages = torch.randn(B, generator=torch.Generator().manual_seed(1))
        batch = Batch(obs, actions, logp - 0.1, values, advantages, values + advantages)
        if not closed_form:
            monkeypatch.setattr(update, "uses_closed_form_gradients", lambda *args: False)
        else:
            assert update.uses_closed_form_gradients(agent, batch, None)
        optimizer = torch.optim.Adam(agent.parameters(), lr=1e-2, eps=1e-5)
        metrics = update.ppo_update(agent, optimizer, batch, config, 0.2, None,
                                    update.ShuffledMinibatches(torch.Generator().manual_seed(2)))
        results.append(({name: p.detach().clone() for name, p in agent.named_parameters()}, metrics))
    (closed, closed_metrics), (reference, reference_metrics) = results
    assert closed.keys() == reference.keys()
    for name in closed:
        torch.testing.assert_close(closed[name], reference[name], rtol=1e-4, atol=1e-5, msg=name)
    assert closed_metrics == pytest.approx(reference_metrics, rel=1e-4, abs=1e-6)


def test_masked_logits_get_no_gradient_even_where_autograd_alone_decides():
    """A row with every action masked (uniform π) and a masked action that was taken: masked_fill
    passes nothing back to a masked logit, and neither does the closed form."""
    head = torch.randn(3, N, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = torch.ones(3, N, dtype=torch.bool)
    mask[0] = False  # nothing valid
    mask[1, 2] = False  # action 2 taken although masked
    actions = torch.tensor([1, 2, 0])
    weights, entropy_weights = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([0.01, -0.02, 0.03])
    distribution = CategoricalDistribution()
    leaf = head.clone().requires_grad_()
    logp, entropy = distribution.log_prob_and_entropy(leaf, actions, mask)
    (expected,) = torch.autograd.grad((weights * logp).sum() + (entropy_weights * entropy).sum(), [leaf])
    ours = distribution.scores(head, actions, mask).head_gradient(weights.double(), entropy_weights.double())
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
    assert not ours[0].any() and ours[1, 2] == 0


def test_a_tie_outside_the_clip_range_gets_half_the_gradient_as_torch_min_gives_it():
    """Just above 1 + ε, r·Â and clip(r)·Â can round to the same float32: torch.min then sends
    half the gradient through each term and the clipped one drops its half."""
    old_logp = torch.zeros(4096)
    new_logp = torch.full((4096,), float(np.log(np.float32(1.2))))
    while not (new_logp.exp() > torch.tensor(1.2)).all():
        new_logp = torch.nextafter(new_logp, torch.tensor(1.0))
    advantages = torch.randn(4096, generator=torch.Generator().manual_seed(0))
    ratio = (new_logp - old_logp).exp()
    ties = ratio * advantages == ratio.clamp(0.8, 1.2) * advantages
    assert 0 < int(ties.sum()) < 4096  # both cases present
    leaf = new_logp.clone().requires_grad_()
    values, returns = torch.zeros(4096), torch.zeros(4096)
    reference = ppo_loss(leaf, old_logp, advantages, values, values, returns, torch.zeros(4096),
                         clip_coef=0.2, vf_coef=0.5, ent_coef=0.0, clip_value_loss=False)
    (expected,) = torch.autograd.grad(reference.loss, [leaf])
    _, d_logp, _, _ = ppo_loss_gradients(new_logp, old_logp, advantages, values, values, returns,
                                         torch.zeros(4096), clip_coef=0.2, vf_coef=0.5, ent_coef=0.0,
                                         clip_value_loss=False)
    torch.testing.assert_close(d_logp, expected, rtol=1e-6, atol=0)


def test_a_nan_stays_a_nan_for_the_non_finite_gradient_check():
    case = _case(seed=7, masked=False, ties=False)
    old_logp = case["old_logp"].clone()
    old_logp[3] = float("nan")
    values = case["values"].clone()
    values[5] = float("nan")
    terms, d_logp, _, d_values = ppo_loss_gradients(
        case["old_logp"], old_logp, case["advantages"], values, case["old_values"], case["returns"],
        torch.zeros(B, dtype=torch.float64), clip_coef=0.2, vf_coef=0.5, ent_coef=0.0, clip_value_loss=True,
    )
    assert torch.isnan(d_logp[3]) and torch.isnan(d_values[5]) and torch.isnan(terms.loss)
    assert torch.isfinite(d_logp[torch.arange(B) != 3]).all()


def test_a_distribution_that_changes_its_log_prob_goes_back_to_autograd():
    class Tempered(CategoricalDistribution):
        def log_prob_and_entropy(self, head, actions, mask=None):
            return super().log_prob_and_entropy(head / 2, actions, mask)

    assert CategoricalDistribution().closed_form and not Tempered().closed_form


def test_a_frozen_log_std_is_left_alone():
    agent = MLPActorCritic(gym.spaces.Box(-1.0, 1.0, (4,), np.float32), ACTION_SPACES["box"], [16])
    agent.distribution.log_std.requires_grad_(False)
    obs = torch.randn(B, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        actions, logp, values = agent.act(obs)
    batch = Batch(obs, actions, logp, values, torch.randn(B), values)
    trainable = [p for p in agent.parameters() if p.requires_grad]
    update.ppo_update(agent, torch.optim.Adam(trainable, lr=1e-2), batch, PPOConfig(update_epochs=1), 0.2,
                      None, update.ShuffledMinibatches(torch.Generator().manual_seed(2)))
    assert torch.equal(agent.distribution.log_std, torch.zeros(2))


def test_the_closed_form_is_used_only_where_it_gives_ppo_loss_gradients():
    """The transformer scores whole sequences in its own evaluate_actions; a reference-policy KL
    and an extra loss (PPO-ptx) are terms the closed form does not have: all three use autograd."""
    mlp = MLPActorCritic(gym.spaces.Box(-1.0, 1.0, (4,), np.float32), ACTION_SPACES["discrete"], [8])
    transformer = TransformerActorCritic(vocab_size=12, max_len=6, d_model=16, n_layers=1, n_heads=2)
    zeros = torch.zeros(4)
    batch = Batch(torch.zeros(4, 4), zeros.long(), zeros, zeros, zeros, zeros)
    assert update.uses_closed_form_gradients(mlp, batch, None)
    assert not update.uses_closed_form_gradients(transformer, batch, None)
    assert not update.uses_closed_form_gradients(mlp, replace(batch, ref_logp=zeros), None)
    assert not update.uses_closed_form_gradients(mlp, batch, lambda: torch.zeros(()))


@pytest.mark.parametrize("clip_value_loss", [False, True])
@pytest.mark.parametrize("kl_coef", [None, 0.2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numpy_arithmetic_gives_torchs_gradients_bit_for_bit(clip_value_loss, kl_coef, dtype):
    """CPU tensors go through numpy views (NumpyOps); the same operations in torch (TorchOps, the
    path of other devices) give the same bits, ties at the clip edges and NaN included."""
    generator = torch.Generator().manual_seed(3)
    new_logp = torch.randn(B, generator=generator, dtype=dtype)
    old_logp = new_logp + 0.3 * torch.randn(B, generator=generator, dtype=dtype)
    old_logp[:8] = new_logp[:8]  # ratio exactly 1: every term ties
    old_logp[8] = float("nan")
    values = torch.randn(B, generator=generator, dtype=dtype)
    old_values = values + 0.3 * torch.randn(B, generator=generator, dtype=dtype)
    old_values[:8] = values[:8]
    rest = [torch.randn(B, generator=generator, dtype=dtype) for _ in range(2)] + [torch.rand(B, dtype=dtype)]
    advantages, returns, entropy = rest
    coefs = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01, clip_value_loss=clip_value_loss, kl_coef=kl_coef)
    args = (new_logp, old_logp, advantages, values, old_values, returns, entropy)
    numpy_terms, *numpy_gradients = ppo_loss_gradients(*args, **coefs)  # the CPU default
    torch_terms, *torch_gradients = ppo_loss_gradients(*args, **coefs, ops=TorchOps)
    for ours, theirs in zip(numpy_gradients, torch_gradients):
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        assert torch.equal(torch.isnan(ours), torch.isnan(theirs))
        assert torch.equal(ours.nan_to_num(7.0), theirs.nan_to_num(7.0))
    # approx_kl decides target_kl's early stop and the KL penalty's β: the same bits as torch's,
    # checked on finite inputs (a NaN would hide a rounding difference).
    finite = (new_logp, old_logp.nan_to_num(0.0), *args[2:])
    for _ in range(20):
        finite = (finite[0] + 0.01 * torch.randn(B, generator=generator, dtype=dtype), *finite[1:])
        numpy_kl = ppo_loss_gradients(*finite, **coefs)[0]
        torch_kl = ppo_loss_gradients(*finite, **coefs, ops=TorchOps)[0]
        assert torch.equal(numpy_kl.approx_kl, torch_kl.approx_kl)
        assert torch.equal(numpy_kl.clip_fraction, torch_kl.clip_fraction)
    for name in ("loss", "policy_loss", "value_loss", "entropy"):
        torch.testing.assert_close(getattr(numpy_terms, name), getattr(torch_terms, name), equal_nan=True,
                                   rtol=1e-6 if dtype == torch.float32 else 1e-12, atol=0)
