"""The PPO loss differentiated by hand (agents/core/loss_gradients.py, and the categorical head's
part in agents/networks/distributions.py) against autograd.

The reference is torch's own differentiation of agents/core/loss.py's ppo_loss on
log_prob_and_entropy: every branch of the loss (clipped surrogate or KL penalty, value clipping,
entropy bonus, masked actions) and the ties where torch.min / torch.max split their gradient.
"""

from __future__ import annotations

import pytest
import torch

from agents.core.loss import ppo_loss
from agents.core.loss_gradients import ppo_loss_gradients
from agents.networks.distributions import CategoricalDistribution, log_prob_and_entropy, masked_logits

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


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("with_entropy", [False, True])
def test_the_categorical_head_gradient_of_any_loss_of_logp_and_entropy(masked, with_entropy):
    """head_gradient(∂L/∂ log π, ∂L/∂H) for L = Σ w·log π + u·H with random weights w, u (|u| small,
    as PPO's c_e/B: at a masked logit autograd's own backward overflows to NaN once |u| > 1)."""
    case = _case(seed=3, masked=masked, ties=False)
    generator = torch.Generator().manual_seed(5)
    weights = torch.randn(B, generator=generator, dtype=torch.float64)
    entropy_weights = 0.01 * torch.randn(B, generator=generator, dtype=torch.float64)
    entropy_weights = entropy_weights if with_entropy else None
    head = case["head"].clone().requires_grad_()
    logp, entropy = CategoricalDistribution().log_prob_and_entropy(head, case["actions"], case["mask"])
    loss = (weights * logp).sum() + ((entropy_weights * entropy).sum() if with_entropy else 0.0)
    (expected,) = torch.autograd.grad(loss, [head])
    scores = CategoricalDistribution().scores(head.detach(), case["actions"], case["mask"])
    torch.testing.assert_close(scores.logp, logp.detach(), rtol=0, atol=0)
    torch.testing.assert_close(scores.entropy, entropy.detach(), rtol=0, atol=0)
    ours = scores.head_gradient(weights, entropy_weights)
    torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-12)
