"""Reward model r_θ(x, y) trained from pairwise preferences (Bradley–Terry), as in RLHF.

Model: the policy's transformer trunk with its scalar (value) head read at the last real token
of prompt + completion. `RewardModel` is `TransformerActorCritic` with the full gradient of the
scalar head flowing into the trunk (value_grad_scale = 1): here the scalar is the only output
that trains. Initialising it from the SFT policy (InstructGPT does the same) gives it features of
the text distribution it will judge.

Preferences: for a prompt x and two completions, the one with the higher gold score is preferred
(y_w ≻ y_l). Bradley–Terry: P(y_w ≻ y_l) = σ(r(x, y_w) − r(x, y_l)); the negative log-likelihood
is L = −log σ(r_w − r_l) = softplus(−(r_w − r_l)) (Christiano et al. 2017; Ouyang et al. 2022).

Input convention: the reward model scores prompt + completion without EOS, right-padded with PAD
(what `rm_tokens` builds): the gold judge (VADER) ignores EOS, and a truncated completion has none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from agents.networks.transformer import TransformerActorCritic
from agents.rlhf.fit import adam_fit
from agents.rlhf.token_rows import pad_rows
from envs.scored_text import ScoredTextEnv, Scorer
from envs.token_generation import TokenGenerationEnv
from envs.token_tasks import EOS_ID, PAD_ID


class RewardModel(TransformerActorCritic):
    """r(x, y) = the scalar head at the last real token of prompt + completion; see the module docstring."""

    def __init__(self, vocab_size: int, max_len: int, **kwargs: int) -> None:
        kwargs["value_grad_scale"] = 1.0  # the scalar head is the only thing a reward model learns from
        super().__init__(vocab_size, max_len, **kwargs)

    @classmethod
    def from_policy(cls, policy: TransformerActorCritic) -> "RewardModel":
        """A reward model of the policy's shape, initialised from its weights (trunk and heads)."""
        first = policy.blocks[0]
        model = cls(
            policy.vocab_size, policy.max_len, d_model=policy.position_embedding.shape[1],
            n_layers=len(policy.blocks), n_heads=first.attn.n_heads,
            mlp_ratio=first.mlp[0].out_features // policy.position_embedding.shape[1], pad_id=policy.pad_id,
        )
        model.load_state_dict(policy.state_dict())
        return model.to(policy.position_embedding.device)

    def score(self, tokens: torch.Tensor | np.ndarray) -> torch.Tensor:
        """r for each right-padded row of tokens [B, L] → [B] (with gradients)."""
        return self.forward(tokens)[1]

    def architecture(self) -> dict[str, int]:
        """The constructor's arguments: what a saved reward model needs besides its weights."""
        first = self.blocks[0]
        d_model = self.position_embedding.shape[1]
        return {
            "vocab_size": self.vocab_size, "max_len": self.max_len, "d_model": d_model,
            "n_layers": len(self.blocks), "n_heads": first.attn.n_heads,
            "mlp_ratio": first.mlp[0].out_features // d_model, "pad_id": self.pad_id,
        }

    def scorer(self) -> Scorer:
        """r_θ as a plain callable on one finished observation (prompt + completion, padded), as
        envs.scored_text.ScoredTextEnv calls it."""

        def score(observation: np.ndarray) -> float:
            with torch.inference_mode():
                return float(self.score(rm_tokens([observation], self.max_len))[0])

        return score


class RewardModelEnv(ScoredTextEnv):
    """A token env whose final reward is r_θ(prompt, completion) of `reward_model` (see ScoredTextEnv)."""

    def __init__(
        self,
        env: TokenGenerationEnv,
        reward_model: RewardModel,
        prompts: Sequence[Sequence[int]] | None = None,
    ) -> None:
        if reward_model.max_len < env.unwrapped.max_len:
            raise ValueError(
                f"reward model context {reward_model.max_len} < env sequence length {env.unwrapped.max_len}"
            )
        super().__init__(env, reward_model.scorer(), prompts)
        self.reward_model = reward_model


def rm_tokens(sequences: Sequence[Sequence[int]], max_len: int) -> torch.Tensor:
    """Right-padded [B, max_len] reward-model input: each sequence without EOS/PAD, cut to max_len."""
    return pad_rows(
        [[int(t) for t in s if int(t) not in (PAD_ID, EOS_ID)][:max_len] for s in sequences], max_len
    )


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """mean(−log σ(r_w − r_l)), computed as softplus(r_l − r_w) (stable for large margins)."""
    return F.softplus(rejected_rewards - chosen_rewards).mean()


@dataclass
class PreferencePairs:
    """Pairs of reward-model inputs [N, L]: row i of `chosen` is preferred to row i of `rejected`."""

    chosen: torch.Tensor
    rejected: torch.Tensor
    margin: torch.Tensor  # gold score difference (chosen − rejected, before label noise), [N]

    def __len__(self) -> int:
        return self.chosen.shape[0]


def label_pairs(
    first: Sequence[Sequence[int]],
    second: Sequence[Sequence[int]],
    first_scores: Sequence[float],
    second_scores: Sequence[float],
    max_len: int,
    label_noise: float = 0.0,
    rng: np.random.Generator | None = None,
    min_margin: float = 1e-6,
) -> PreferencePairs:
    """Gold-judge labels: the higher-scoring sequence of each pair is chosen. Pairs whose scores
    differ by less than `min_margin` carry no preference and are dropped; with `label_noise` = p
    each remaining label is flipped with probability p (a noisy human labeller)."""
    if not 0 <= label_noise < 0.5:
        raise ValueError(f"label_noise must be in [0, 0.5), got {label_noise}")
    rng = rng if rng is not None else np.random.default_rng(0)
    s1, s2 = np.asarray(first_scores, dtype=float), np.asarray(second_scores, dtype=float)
    keep = np.flatnonzero(np.abs(s1 - s2) >= min_margin)
    first_wins = s1[keep] > s2[keep]
    flip = rng.random(len(keep)) < label_noise
    first_wins = first_wins ^ flip
    a, b = rm_tokens([first[i] for i in keep], max_len), rm_tokens([second[i] for i in keep], max_len)
    wins = torch.as_tensor(first_wins)[:, None]
    margin = torch.as_tensor(np.abs(s1[keep] - s2[keep]), dtype=torch.float32)
    return PreferencePairs(torch.where(wins, a, b), torch.where(wins, b, a), margin)


@torch.no_grad()
def pairwise_accuracy(model: RewardModel, pairs: PreferencePairs, batch_size: int = 256) -> float:
    """Share of pairs with r(chosen) > r(rejected) (ties count as wrong)."""
    if len(pairs) == 0:
        return float("nan")
    device = model.position_embedding.device
    correct = 0
    for start in range(0, len(pairs), batch_size):
        chosen = model.score(pairs.chosen[start : start + batch_size].to(device))
        rejected = model.score(pairs.rejected[start : start + batch_size].to(device))
        correct += int((chosen > rejected).sum())
    return correct / len(pairs)


def train_reward_model(
    model: RewardModel,
    pairs: PreferencePairs,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 3e-4,
    seed: int = 0,
    max_grad_norm: float = 1.0,
) -> dict[str, float | list[float]]:
    """Adam on the Bradley–Terry loss over minibatches of `pairs` drawn with replacement.

    Returns {"loss": last, "initial_loss": first, "losses": every step, "train_accuracy"}.
    """
    if len(pairs) == 0:
        raise ValueError("no preference pairs to train on")
    generator = torch.Generator().manual_seed(seed)
    device = model.position_embedding.device
    model.train()

    def batch_loss() -> torch.Tensor:
        idx = torch.randint(len(pairs), (min(batch_size, len(pairs)),), generator=generator)
        return bradley_terry_loss(
            model.score(pairs.chosen[idx].to(device)), model.score(pairs.rejected[idx].to(device))
        )

    losses = adam_fit(model, batch_loss, steps, lr, max_grad_norm)
    model.eval()
    model.reset_cache()
    return {
        "loss": losses[-1] if losses else float("nan"),
        "initial_loss": losses[0] if losses else float("nan"),
        "losses": losses,
        "train_accuracy": pairwise_accuracy(model, pairs),
    }
