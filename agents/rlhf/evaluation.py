"""Sampling completions from a token policy and measuring them: what the RLHF pipeline's
reward-model and evaluation stages do with a policy, as maths (no files)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from agents.networks.transformer import TransformerActorCritic
from agents.rlhf.reward_model import RewardModel, rm_tokens
from agents.rlhf.token_rows import pad_rows, span_mask
from envs.sentiment_corpus import SentimentGrammar
from envs.token_tasks import EOS_ID, SentimentTask


@torch.no_grad()
def sample_completions(
    model: TransformerActorCritic, prompts: Sequence[Sequence[int]], max_new_tokens: int, seed: int = 0
) -> list[list[int]]:
    """Prompt + sampled completion (+ EOS if the model ended it) per prompt, ancestral sampling
    at temperature 1 (what the KL and the env see), batched through the model's KV cache."""
    device = model.position_embedding.device
    batch = len(prompts)
    tokens = pad_rows(prompts, model.max_len).to(device)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    if int(lengths.max()) + max_new_tokens > model.max_len:
        raise ValueError(f"prompt + {max_new_tokens} new tokens exceed the model's context {model.max_len}")
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for _ in range(max_new_tokens):
            action = model.act(tokens)[0]
            rows = (~done).nonzero().squeeze(1)
            tokens[rows, lengths[rows]] = action[rows]
            lengths[rows] += 1
            done[rows] |= action[rows] == EOS_ID
            if bool(done.all()):
                break
    model.train(was_training)
    return [tokens[i, : int(lengths[i])].tolist() for i in range(batch)]


def completion_of(sequence: Sequence[int], prompt_len: int) -> list[int]:
    """The completion tokens of prompt + completion (+ EOS), without EOS."""
    return [int(t) for t in sequence[prompt_len:] if int(t) != EOS_ID]


def completion_logprobs(
    model: TransformerActorCritic, sequences: Sequence[Sequence[int]], prompt_lens: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(y_t | y_<t) of every generated token (EOS included): logp [B, L−1] and its mask."""
    device = model.position_embedding.device
    tokens = pad_rows(sequences)
    tokens, mask = tokens.to(device), span_mask(sequences, prompt_lens, tokens.shape[1]).to(device)
    logits, _ = model.sequence_logits_and_values(tokens[:, :-1])
    logp = logits.log_softmax(-1).gather(2, tokens[:, 1:, None]).squeeze(2)
    return logp.masked_fill(~mask[:, 1:], 0.0), mask[:, 1:]


@torch.no_grad()
def evaluate_policy(
    policy: TransformerActorCritic,
    sft: TransformerActorCritic,
    reward_model: RewardModel,
    task: SentimentTask,
    grammar: SentimentGrammar,
    prompts: Sequence[Sequence[int]],
    samples_per_prompt: int,
    max_new_tokens: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Sample completions of `prompts` from `policy` and measure them.

    gold_reward: mean VADER compound; rm_score: mean r_θ; kl_to_sft: mean over completions of
    Σ_t log π(y_t|·) − log π_SFT(y_t|·), the k1 Monte-Carlo estimate of KL(π ‖ π_SFT) per
    completion (samples drawn from π at temperature 1, so it is unbiased); fluency: share of
    sentences the grammar accepts; sft_perplexity: exp of the mean per-token NLL under π_SFT.
    `gold_rewards` keeps every sample's score (the before/after-RL distribution).
    """
    batch = [list(p) for p in prompts for _ in range(samples_per_prompt)]
    prompt_lens = [len(p) for p in batch]
    sequences = sample_completions(policy, batch, max_new_tokens, seed)
    gold = [task.score(p, completion_of(s, n)) for p, s, n in zip(batch, sequences, prompt_lens)]
    rm_scores = reward_model.score(
        rm_tokens(sequences, reward_model.max_len).to(reward_model.position_embedding.device)
    )
    logp, mask = completion_logprobs(policy, sequences, prompt_lens)
    sft_logp, _ = completion_logprobs(sft, sequences, prompt_lens)
    sft_nll = -(sft_logp.sum() / mask.sum()).item()
    return {
        "gold_reward": float(np.mean(gold)),
        "rm_score": float(rm_scores.mean()),
        "kl_to_sft": float((logp - sft_logp).sum(1).mean()),
        "fluency": float(np.mean([grammar.accepts(s) for s in sequences])),
        "sft_perplexity": math.exp(sft_nll),
        "length": float(np.mean([len(s) - n for s, n in zip(sequences, prompt_lens)])),
        "gold_rewards": gold,
        "samples": [task.decode(s) for s in sequences[:: max(1, samples_per_prompt)]],
    }


EVAL_SCALARS = ("gold_reward", "rm_score", "kl_to_sft", "fluency", "sft_perplexity", "length")


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per policy, one column per scalar."""
    header = f"{'policy':<8}" + "".join(f"{name:>15}" for name in EVAL_SCALARS)
    rows = [
        f"{policy:<8}" + "".join(f"{metrics[n]:>15.4f}" for n in EVAL_SCALARS)
        for policy, metrics in results.items()
    ]
    return "\n".join([header, *rows])
