"""bf16 autocast (the CNN's speed-up on CPUs with native bf16) against float32 on a fixed batch.

The batch is real: Breakout frames from our Atari stack under a seeded random policy, with
advantages and returns of plausible size. Both precisions start from the same weights; the
losses and the gradient they produce must agree closely, else bf16 would change what PPO learns.
"""

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.config import PPOConfig
from agents.core.batch import Batch
from agents.core.loss import ppo_loss
from agents.core.update import ShuffledMinibatches, ppo_update
from agents.networks.build import bf16_supported
from agents.networks.cnn import CNNActorCritic
from envs.atari import make_atari

pytestmark = pytest.mark.skipif(
    not bf16_supported(torch.device("cpu")), reason="this CPU has no native bf16 (AVX512-BF16 / AMX)"
)


@pytest.fixture(scope="module")
def batch():
    env = make_atari("BreakoutNoFrameskip-v4")
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    frames = []
    for _ in range(256):
        frames.append(obs)
        obs, _, terminated, truncated, _ = env.step(int(rng.integers(env.action_space.n)))
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()
    generator = torch.Generator().manual_seed(0)
    n = len(frames)
    return Batch(
        obs=torch.as_tensor(np.stack(frames)),
        actions=torch.randint(0, 4, (n,), generator=generator),
        logp=torch.log(torch.full((n,), 0.25)) + 0.05 * torch.randn(n, generator=generator),
        values=0.1 * torch.randn(n, generator=generator),
        advantages=torch.randn(n, generator=generator),
        returns=torch.randn(n, generator=generator),
    )


def make_agent(dtype):
    torch.manual_seed(0)
    agent = CNNActorCritic(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8), 4)
    agent.autocast_dtype = dtype
    return agent


def loss_and_gradient(agent, batch):
    new_logp, entropy, new_values = agent.evaluate_actions(batch.obs, batch.actions)
    terms = ppo_loss(
        new_logp, batch.logp, batch.advantages, new_values, batch.values, batch.returns, entropy,
        clip_coef=0.1, vf_coef=0.5, ent_coef=0.01,
    )
    agent.zero_grad()
    terms.loss.backward()
    gradient = torch.cat([p.grad.flatten() for p in agent.parameters()])
    return terms, gradient


def test_bf16_loss_and_gradient_match_fp32(one_torch_thread, batch):
    fp32_terms, fp32_grad = loss_and_gradient(make_agent(None), batch)
    bf16_terms, bf16_grad = loss_and_gradient(make_agent(torch.bfloat16), batch)
    for name in ("loss", "policy_loss", "value_loss", "entropy"):
        a, b = getattr(fp32_terms, name).item(), getattr(bf16_terms, name).item()
        # bf16 keeps 8 mantissa bits (relative step 2^-8 ≈ 0.4 %); the sums inside stay fp32.
        assert b == pytest.approx(a, rel=1e-2, abs=1e-3), name
    cosine = torch.nn.functional.cosine_similarity(fp32_grad, bf16_grad, dim=0).item()
    assert cosine > 0.99
    assert bf16_grad.norm().item() == pytest.approx(fp32_grad.norm().item(), rel=0.05)


def test_bf16_update_moves_the_weights_like_fp32(one_torch_thread, batch):
    """One PPO epoch (4 minibatches, Adam): bf16 and fp32 end at nearly the same weights."""
    config = PPOConfig(update_epochs=1, num_minibatches=4, learning_rate=2.5e-4, clip_coef=0.1)
    ends = {}
    start = make_agent(None)
    for dtype in (None, torch.bfloat16):
        agent = copy.deepcopy(start)
        agent.autocast_dtype = dtype
        optimizer = torch.optim.Adam(agent.parameters(), lr=config.learning_rate, eps=1e-5)
        ppo_update(
            agent, optimizer, batch, config, 0.1, None, ShuffledMinibatches(torch.Generator().manual_seed(1))
        )
        ends[dtype] = torch.cat([p.detach().flatten() for p in agent.parameters()])
    initial = torch.cat([p.detach().flatten() for p in start.parameters()])
    fp32_step, bf16_step = ends[None] - initial, ends[torch.bfloat16] - initial
    # Adam's steps are ±lr-sized for every weight, so compare the directions of the whole update.
    assert torch.nn.functional.cosine_similarity(fp32_step, bf16_step, dim=0).item() > 0.9
