"""RLHF pieces against exact values: KL estimators, GRPO advantages, β control, reward placement."""

import numpy as np
import pytest
import torch

from agents.config import config_from_dict
from agents.core.loss import ppo_loss
from agents.core.rollout import collect_rollout
from agents.core.storage import RolloutStorage
from agents.networks.build import build_agent
from agents.rlhf.grpo import group_advantages
from agents.rlhf.reference import AdaptiveKLController, kl_penalised_rewards
from envs.vector import make_vector_env

# π (policy) and π_ref over 4 tokens, with probabilities in eighths so that a batch of 8 samples
# drawn exactly in proportion to π makes every sample mean an exact expectation under π.
POLICY = torch.tensor([4, 2, 1, 1]) / 8
REFERENCE = torch.tensor([0.1, 0.2, 0.3, 0.4])
SAMPLES = torch.tensor([0, 0, 0, 0, 1, 1, 2, 3])
EXACT_KL = float((POLICY * (POLICY / REFERENCE).log()).sum())  # KL(π ‖ π_ref)


def test_k1_reward_penalty_averages_to_the_exact_kl():
    logp, ref_logp = POLICY.log()[SAMPLES], REFERENCE.log()[SAMPLES]
    penalised = kl_penalised_rewards(torch.zeros(8), logp, ref_logp, kl_coef=1.0)
    assert float(-penalised.mean()) == pytest.approx(EXACT_KL, rel=1e-6)
    assert (penalised > 0).any()  # k1 is negative for some samples: unbiased, not per-sample >= 0


def test_k3_loss_term_averages_to_the_exact_kl_and_is_never_negative():
    logp, ref_logp = POLICY.log()[SAMPLES], REFERENCE.log()[SAMPLES]
    zeros = torch.zeros(8)
    terms = ppo_loss(
        logp, logp, zeros, zeros, zeros, zeros, zeros,
        clip_coef=0.2, vf_coef=0.0, ent_coef=0.0, ref_logp=ref_logp, ref_kl_coef=0.5,
    )
    assert float(terms.ref_kl) == pytest.approx(EXACT_KL, rel=1e-6)
    assert float(terms.loss) == pytest.approx(0.5 * EXACT_KL, rel=1e-6)  # r = 1: only the KL term
    rho = (ref_logp - logp).exp()
    assert ((rho - 1 - rho.log()) >= 0).all()


def test_grpo_advantages_on_a_hand_made_group():
    rewards = torch.tensor([1.0, 0.0, 0.5, 0.5, 0.2, 0.4])
    advantages, zero_spread = group_advantages(rewards, group_size=2)
    # (1, 0): mean 0.5, sample std 0.7071 → ±0.7071; (0.5, 0.5): no spread → 0; (0.2, 0.4) → ∓0.7071
    assert advantages.tolist() == pytest.approx([0.7071, -0.7071, 0.0, 0.0, -0.7071, 0.7071], abs=1e-4)
    assert zero_spread == pytest.approx(1 / 3)


def test_adaptive_kl_controller_moves_beta_by_at_most_20_percent_per_horizon():
    controller = AdaptiveKLController(initial=0.1, target=2.0, horizon=100)
    assert controller.update(observed_kl=10.0, num_completions=50) == pytest.approx(0.1 * (1 + 0.2 * 0.5))
    controller = AdaptiveKLController(initial=0.1, target=2.0, horizon=100)
    assert controller.update(observed_kl=1.8, num_completions=100) == pytest.approx(0.1 * (1 - 0.1))


def test_the_score_lands_on_the_last_real_token():
    config = config_from_dict(
        {
            "env_id": "TokenGen/DigitSort-v0",
            "env": {"num_envs": 4, "kwargs": {"k": 3}, "bootstrap_truncated": False},
        }
    )
    envs = make_vector_env(config)
    agent = build_agent(config, envs.single_observation_space, int(envs.single_action_space.n))
    storage = RolloutStorage(16, 4, envs.single_observation_space.shape, torch.int64, torch.device("cpu"))
    scores = []

    def record(infos):
        final = infos.get("final_info", {})
        if "score" in final:
            scores.extend(final["score"][final["_score"]].tolist())

    obs, _ = envs.reset(seed=0)
    torch.manual_seed(0)
    collect_rollout(agent, envs, storage, torch.as_tensor(obs), record, bootstrap_truncated=False)
    envs.close()
    ended = storage.terminated.bool()
    assert ended.any() and storage.truncated.sum() == 0  # the length cap counts as terminal here
    assert (storage.rewards[~ended] == 0).all()  # nothing before the end
    assert sorted(storage.rewards[ended].tolist()) == pytest.approx(sorted(scores))
    # The rewarded step is the one that wrote the last real token: its observation is the prompt
    # and completion so far (no padding is ever a state of its own: PAD never precedes a token).
    lengths = (storage.obs != 0).sum(-1)
    assert (lengths[ended] >= 4).all()  # 3 prompt digits + separator at least
    rows = np.flatnonzero(ended[:, 0].numpy())
    assert all(lengths[t, 0] > lengths[t - 1, 0] for t in rows if t > 0 and not ended[t - 1, 0])
