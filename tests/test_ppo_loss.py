"""The PPO loss on a two-sample batch against numbers computed by hand."""

import math

import pytest
import torch

from agents.core.loss import ppo_loss
from agents.core.schedules import KLPenaltyCoefficient

OLD_LOGP = torch.log(torch.tensor([0.4, 0.3]))
NEW_LOGP = torch.log(torch.tensor([0.5, 0.3]))  # ratios r = [1.25, 1.0]
ADV = torch.tensor([1.0, -2.0])
NEW_V, OLD_V, RET = torch.tensor([1.0, 3.0]), torch.tensor([0.5, 2.0]), torch.tensor([2.0, 2.0])
ENTROPY = torch.tensor([1.0, 0.5])
K3 = (1.25 - 1 - math.log(1.25)) / 2  # mean of (r − 1) − log r over the two samples


def loss(**kwargs):
    args = dict(clip_coef=0.2, vf_coef=0.5, ent_coef=0.01, clip_value_loss=True)
    args.update(kwargs)
    return ppo_loss(NEW_LOGP, OLD_LOGP, ADV, NEW_V, OLD_V, RET, ENTROPY, **args)


def test_clip_active():
    terms = loss(clip_coef=0.2)
    # min(1.25·1, 1.2·1) = 1.2 and min(1·−2, 1·−2) = −2 → L_policy = −mean = 0.4
    assert terms.policy_loss.item() == pytest.approx(0.4)
    assert terms.clip_fraction.item() == pytest.approx(0.5)
    assert terms.approx_kl.item() == pytest.approx(K3, rel=1e-5)


def test_clip_inactive():
    terms = loss(clip_coef=0.3)
    assert terms.policy_loss.item() == pytest.approx(-(1.25 - 2.0) / 2)
    assert terms.clip_fraction.item() == 0.0


def test_negative_advantage_takes_the_pessimistic_clipped_term():
    terms = ppo_loss(
        torch.log(torch.tensor([0.7])), torch.tensor([0.0]), torch.tensor([-1.0]),
        torch.zeros(1), torch.zeros(1), torch.zeros(1), torch.zeros(1),
        clip_coef=0.2, vf_coef=0.0, ent_coef=0.0,
    )
    # r = 0.7: min(0.7·−1, 0.8·−1) = −0.8
    assert terms.policy_loss.item() == pytest.approx(0.8)


def test_value_loss_clipped_and_unclipped():
    # unclipped errors: (1−2)² = 1, (3−2)² = 1; clipped predictions 0.7 and 2.2 → 1.69, 0.04
    assert loss(clip_value_loss=True).value_loss.item() == pytest.approx((1.69 + 1.0) / 2)
    assert loss(clip_value_loss=False).value_loss.item() == pytest.approx(1.0)


def test_combined_loss():
    terms = loss()
    expected = 0.4 + 0.5 * 1.345 - 0.01 * 0.75
    assert terms.loss.item() == pytest.approx(expected)


def test_kl_penalty_variant():
    terms = loss(kl_coef=0.5)
    # mean(r·Â − β·k3) = (1.25 − 0.5·k3₀ − 2)/2
    assert terms.policy_loss.item() == pytest.approx(-(1.25 - 0.5 * 2 * K3 - 2.0) / 2)


def test_gradient_points_towards_higher_advantage_actions():
    new_logp = NEW_LOGP.clone().requires_grad_(True)
    ppo_loss(
        new_logp, OLD_LOGP, ADV, NEW_V, OLD_V, RET, ENTROPY, clip_coef=0.3, vf_coef=0, ent_coef=0
    ).loss.backward()
    assert new_logp.grad[0] < 0 < new_logp.grad[1]  # descend: raise logp of Â>0, lower Â<0


def test_adaptive_kl_coefficient_doubles_and_halves():
    beta = KLPenaltyCoefficient(initial=1.0, target=0.01)
    assert beta.update(0.02) == 2.0  # > 1.5·target
    assert beta.update(0.01) == 2.0  # within the band
    assert beta.update(0.005) == 1.0  # < target/1.5
