"""Supervised warm start: the loss mask, and SFT lowering the demonstration cross-entropy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agents.networks.transformer import TransformerActorCritic
from agents.rlhf.sft import demonstration_batch, evaluate_cross_entropy, sft_train
from envs.token_generation import make_digit_sort_env
from envs.token_tasks import EOS_ID, DigitSortTask, SentimentTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def test_loss_mask_covers_the_completion_and_eos_only() -> None:
    task = DigitSortTask(k=3)
    tokens, mask = demonstration_batch(task, 4, np.random.default_rng(0), max_len=8)
    assert tokens.shape == mask.shape == (4, 8)
    assert not mask[:, :4].any() and mask[:, 4:].all()  # 3 digits + "|", then 3 digits + EOS
    assert (tokens[:, -1] == EOS_ID).all()

    task = SentimentTask()
    tokens, mask = demonstration_batch(task, 16, np.random.default_rng(0), max_len=13)
    for row, row_mask in zip(tokens.tolist(), mask):
        n = task.prompt_length(row)
        length = row.index(EOS_ID) + 1
        assert not row_mask[:n].any() and row_mask[n:length].all() and not row_mask[length:].any()


def test_sft_lowers_digit_sort_cross_entropy_and_teaches_the_format() -> None:
    """Demonstrations = prompt, k random digits, EOS. The best any policy can do is
    H = k·ln 10 / (k + 1) nats per completion token (uniform digits, then a certain EOS)."""
    k = 3
    task = DigitSortTask(k)
    torch.manual_seed(0)
    model = TransformerActorCritic(
        len(task.vocab), task.max_demonstration_len, d_model=32, n_layers=2, n_heads=4
    )
    before = evaluate_cross_entropy(model, task)
    metrics = sft_train(model, task, steps=150, batch_size=32, lr=3e-3, seed=0)
    after = evaluate_cross_entropy(model, task)
    optimum = k * math.log(10) / (k + 1)
    assert before == pytest.approx(math.log(len(task.vocab) - 1), abs=0.05)  # ≈ uniform over non-PAD
    assert metrics["loss"] < metrics["initial_loss"] - 0.3
    assert after < before - 0.4 and after < optimum + 0.1
    # The format is learnt: greedy completions are k digits, then EOS.
    env = make_digit_sort_env(k)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        done = False
        while not done:
            action = int(model.act(obs[None], deterministic=True)[0])
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        assert terminated and len(info["completion"]) == k
        assert set(info["completion"]) <= set(task.digit_ids.tolist())


def test_sft_runs_on_sentiment_demonstrations() -> None:
    task = SentimentTask()
    torch.manual_seed(0)
    model = TransformerActorCritic(len(task.vocab), task.max_demonstration_len, d_model=32)
    before = evaluate_cross_entropy(model, task, num_sequences=64)
    metrics = sft_train(model, task, steps=30, batch_size=32, lr=3e-3, seed=np.random.default_rng(0))
    assert len(metrics["losses"]) == 30 and math.isfinite(metrics["loss"])
    assert evaluate_cross_entropy(model, task, num_sequences=64) < before - 0.5
