"""GAE against numbers computed by hand (γ = 0.9, λ = 0.5)."""

import pytest
import torch

from agents.core.gae import compute_gae

GAMMA, LAMBDA = 0.9, 0.5


def column(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).unsqueeze(1)  # [T, 1 env]


def run(terminated, truncated, final_values, values=(0.5, 1.0, 1.5), next_value=2.0):
    return compute_gae(
        rewards=column(1.0, 2.0, 3.0),
        values=column(*values),
        terminated=column(*terminated),
        truncated=column(*truncated),
        final_values=column(*final_values),
        next_value=torch.tensor([next_value]),
        gamma=GAMMA,
        gae_lambda=LAMBDA,
    )


def test_no_episode_end_bootstraps_from_next_value():
    adv, ret = run((0, 0, 0), (0, 0, 0), (0, 0, 0))
    # δ2 = 3 + .9·2 − 1.5 = 3.3; δ1 = 2 + .9·1.5 − 1 = 2.35; δ0 = 1 + .9·1 − .5 = 1.4
    # Â2 = 3.3; Â1 = 2.35 + .45·3.3 = 3.835; Â0 = 1.4 + .45·3.835 = 3.12575
    assert adv.squeeze(1).tolist() == pytest.approx([3.12575, 3.835, 3.3])
    assert ret.squeeze(1).tolist() == pytest.approx([3.62575, 4.835, 4.8])


def test_termination_inside_segment_stops_bootstrap_and_credit_flow():
    adv, ret = run((0, 1, 0), (0, 0, 0), (0, 0, 0))
    # δ1 = 2 − 1 = 1 (terminal state has value 0); Â0 = 1.4 + .45·1 = 1.85
    assert adv.squeeze(1).tolist() == pytest.approx([1.85, 1.0, 3.3])
    assert ret.squeeze(1).tolist() == pytest.approx([2.35, 2.0, 4.8])


def test_truncation_bootstraps_from_final_observation_value():
    adv, _ = run((0, 0, 0), (0, 1, 0), (0, 4.0, 0))
    # δ1 = 2 + .9·4 − 1 = 4.6 (V of the truncated episode's last obs, not of the reset obs)
    # Â0 = 1.4 + .45·4.6 = 3.47
    assert adv.squeeze(1).tolist() == pytest.approx([3.47, 4.6, 3.3])


def test_terminated_and_truncated_together_counts_as_terminal():
    adv, _ = run((0, 1, 0), (0, 1, 0), (0, 4.0, 0))
    assert adv.squeeze(1).tolist() == pytest.approx([1.85, 1.0, 3.3])


def test_the_next_episode_does_not_leak_across_the_boundary():
    # With SAME_STEP autoreset, row 2 already belongs to the next episode: its value and reward
    # must not reach the advantages of the episode that ended at row 1.
    adv_a, _ = run((0, 1, 0), (0, 0, 0), (0, 0, 0), values=(0.5, 1.0, 1.5))
    adv_b, _ = run((0, 1, 0), (0, 0, 0), (0, 0, 0), values=(0.5, 1.0, -7.0), next_value=9.0)
    assert adv_a[:2].flatten().tolist() == pytest.approx(adv_b[:2].flatten().tolist())
    assert adv_a[2].item() != pytest.approx(adv_b[2].item())


def test_envs_are_independent_columns():
    rewards = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    values = torch.zeros(2, 2)
    terminated = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    zeros = torch.zeros(2, 2)
    adv, _ = compute_gae(rewards, values, terminated, zeros, zeros, torch.zeros(2), 1.0, 1.0)
    # env 0 terminates at t=0: Â = [1, 0]; env 1: the reward at t=1 flows back with γλ = 1
    assert adv.flatten().tolist() == pytest.approx([1.0, 1.0, 0.0, 1.0])
