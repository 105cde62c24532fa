"""Action distributions π(a|s), one per kind of gymnasium action space, behind one interface: the
PPO core only ever samples, scores and measures the entropy of actions, whatever their space.

A network's action head outputs `head_size` numbers per observation; the distribution turns them
into π(·|s):
- Discrete(n):          categorical over n logits (masked logits: probability 0, no entropy);
- MultiDiscrete(nvec):  independent categoricals, one per entry; log-probs and entropies summed;
- MultiBinary(n):       independent Bernoullis over n logits;
- Box(low, high):       diagonal Gaussian N(μ(s), diag σ²) with a learned, state-independent log σ
                        (initialised to 0, as Stable-Baselines3 and CleanRL do). The sampled action
                        is stored unclipped (its log-prob is exact) and clipped to the bounds only
                        when sent to the env, as SB3 does; `squash` instead maps it through tanh onto
                        the bounds, with the log-det correction −Σ log(1 − tanh²u).
Deterministic play takes argmax / the most likely bits / μ.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.config import ConfigError
from agents.networks.head_scores import (
    BernoulliScores,
    HeadScores,
    SummedScores,
    categorical_scores,
    categorical_terms,
    gaussian_scores,
)


def masked_logits(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Invalid actions (mask False) get the dtype's minimum logit: probability exactly 0."""
    return logits if mask is None else logits.masked_fill(~mask, torch.finfo(logits.dtype).min)


def sample_action(logits: torch.Tensor, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """a ~ softmax(logits) (argmax if deterministic) per row → (a, log π(a|s)).

    Written out instead of torch.distributions.Categorical (same numbers, same draws from the
    same generator state) to skip its per-call argument checks; every network shares it.
    """
    log_probs = logits.log_softmax(dim=-1)
    if deterministic:
        action = logits.argmax(dim=-1)
    else:
        action = draw_categorical(log_probs.exp())
    logp = log_probs.gather(-1, action.unsqueeze(-1)).squeeze(-1)
    return action, logp


def draw_categorical(probs: torch.Tensor) -> torch.Tensor:
    """One index per row of `probs` (a softmax's output: non-negative, rows summing to 1), drawn
    with probability probs[i] as `torch.multinomial(probs, 1)` draws it: argmax_i probs[i] / q_i
    with q_i ~ Exp(1), the exponential-race form of the Gumbel-max trick, and the algorithm of
    torch's own one-sample path (the same draws from the same generator, bit for bit:
    tests/test_spaces.py).

    Why not call it: on CPU, torch.multinomial first checks the whole tensor for negative,
    non-finite and all-zero rows (reductions and a sync), 13–23 µs for 8 × 2 probabilities, where
    the draw takes 5. Of those checks only the one a softmax can fail is kept: +inf in the logits,
    or a row of NaN or only −inf, makes that row's probabilities NaN, and that raises."""
    if probs.device.type != "cpu" or probs.dtype not in (torch.float32, torch.float64):
        return torch.multinomial(probs, 1).squeeze(-1)
    race = probs / torch.empty_like(probs).exponential_(1)
    if np.isnan(race.detach().numpy()).any():
        raise ValueError("the policy's probabilities contain NaN (from NaN, +inf or all −inf logits)")
    return race.argmax(dim=-1)


def log_prob_and_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(log π(a|s), H(π(·|s)) = −Σ_a π(a|s) log π(a|s)) per row of `logits` for integer `actions`.

    A masked logit (the dtype's minimum, e.g. the transformer's PAD) has π = 0 exactly and adds
    0 · (finite) = 0 to the entropy.
    """
    _, _, logp, entropy = categorical_terms(logits, actions)
    return logp, entropy


class ActionDistribution(nn.Module):
    """π(·|s) from a head output [B, head_size]; actions are [B, *action_shape] of action_dtype."""

    head_size: int
    action_shape: tuple[int, ...] = ()
    action_dtype: torch.dtype = torch.long

    def sample(
        self, head: torch.Tensor, deterministic: bool = False, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, log π(a|s)) per row; `mask` [B, n] (Discrete only) rules actions out."""
        raise NotImplementedError

    def log_prob_and_entropy(
        self, head: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(log π(a|s), H(π(·|s))) per row, with gradients."""
        raise NotImplementedError

    def to_env(self, actions: torch.Tensor) -> np.ndarray:
        """The actions as the env takes them."""
        return actions.cpu().numpy()

    @property
    def closed_form(self) -> bool:
        """Whether scores() gives this distribution's log π and H with their derivatives: the PPO
        update then differentiates its loss by hand down to the head (agents/core/loss_gradients.py)
        and backpropagates through the network only. Only where the class that defines scores()
        also defines log_prob_and_entropy: a subclass that changes one of them (a temperature, a
        state-dependent σ) goes back to autograd."""

        def owner(name: str) -> type:
            return next(cls for cls in type(self).__mro__ if name in cls.__dict__)

        return owner("scores") is owner("log_prob_and_entropy") is not ActionDistribution

    def scores(
        self, head: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> HeadScores:
        """log_prob_and_entropy's numbers, with their derivatives (agents/networks/head_scores.py)."""
        raise NotImplementedError


class CategoricalDistribution(ActionDistribution):
    """softmax over the head's n logits (n None: however many the network outputs)."""

    def __init__(self, n: int | None = None) -> None:
        super().__init__()
        self.head_size = n

    def sample(self, head, deterministic=False, mask=None):
        return sample_action(masked_logits(head, mask), deterministic)

    def log_prob_and_entropy(self, head, actions, mask=None):
        return log_prob_and_entropy(masked_logits(head, mask), actions)

    def scores(self, head, actions, mask=None):
        return categorical_scores(masked_logits(head, mask), actions, mask)


class MultiCategoricalDistribution(ActionDistribution):
    """One categorical per entry of nvec, over consecutive slices of the head."""

    def __init__(self, nvec: list[int]) -> None:
        super().__init__()
        self.nvec = [int(n) for n in nvec]
        self.head_size, self.action_shape = sum(self.nvec), (len(self.nvec),)

    def sample(self, head, deterministic=False, mask=None):
        draws = [sample_action(logits, deterministic) for logits in head.split(self.nvec, dim=-1)]
        return torch.stack([a for a, _ in draws], dim=-1), torch.stack([lp for _, lp in draws], -1).sum(-1)

    def log_prob_and_entropy(self, head, actions, mask=None):
        parts = [
            log_prob_and_entropy(logits, actions[:, i])
            for i, logits in enumerate(head.split(self.nvec, dim=-1))
        ]
        return torch.stack([lp for lp, _ in parts], -1).sum(-1), torch.stack([h for _, h in parts], -1).sum(
            -1
        )

    @torch.no_grad()
    def scores(self, head, actions, mask=None):
        slices = head.split(self.nvec, dim=-1)
        parts = [categorical_scores(logits, actions[:, i]) for i, logits in enumerate(slices)]
        logp = torch.stack([part.logp for part in parts], -1).sum(-1)
        return SummedScores(logp, torch.stack([part.entropy for part in parts], -1).sum(-1), parts)


class BernoulliDistribution(ActionDistribution):
    """Independent bits b_i ~ Bernoulli(σ(x_i)): log p = −softplus(−x), log(1 − p) = −softplus(x)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.head_size, self.action_shape = n, (n,)

    def sample(self, head, deterministic=False, mask=None):
        bits = (head > 0).long() if deterministic else torch.bernoulli(torch.sigmoid(head)).long()
        return bits, self.log_prob_and_entropy(head, bits)[0]

    def log_prob_and_entropy(self, head, actions, mask=None):
        a = actions.to(head.dtype)
        log_p, log_not_p = -F.softplus(-head), -F.softplus(head)
        logp = (a * log_p + (1 - a) * log_not_p).sum(-1)
        p = torch.sigmoid(head)
        return logp, -(p * log_p + (1 - p) * log_not_p).sum(-1)

    @torch.no_grad()
    def scores(self, head, actions, mask=None):
        logp, entropy = self.log_prob_and_entropy(head, actions)
        return BernoulliScores(logp, entropy, head, actions.to(head.dtype))


class DiagGaussianDistribution(ActionDistribution):
    """N(μ, diag σ²) per row, μ = the head, log σ a learned parameter shared by all states:
    log N(u; μ, σ) = Σ_i −(u_i − μ_i)²/(2σ_i²) − log σ_i − ½ log 2π; H = Σ_i ½ + ½ log 2π + log σ_i.
    With `squash`, the env receives low + (tanh u + 1)(high − low)/2 and log π gains
    −Σ log(1 − tanh² u) (the entropy is then estimated by −log π of the sample, as SB3 does)."""

    action_dtype = torch.float32

    def __init__(
        self, low: np.ndarray, high: np.ndarray, squash: bool = False, log_std_init: float = 0.0
    ) -> None:
        super().__init__()
        self.action_shape = tuple(low.shape)
        self.head_size = int(np.prod(self.action_shape))
        self.log_std = nn.Parameter(torch.full((self.head_size,), float(log_std_init)))
        self.register_buffer("low", torch.as_tensor(low, dtype=torch.float32).flatten(), persistent=False)
        self.register_buffer("high", torch.as_tensor(high, dtype=torch.float32).flatten(), persistent=False)
        self.squash = squash

    def _log_prob(self, mean: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        log_std = self.log_std.expand_as(mean)
        logp = (
            -((u - mean) ** 2) / (2 * torch.exp(2 * log_std)) - log_std - 0.5 * math.log(2 * math.pi)
        ).sum(-1)
        if self.squash:
            logp = logp - torch.log(1 - torch.tanh(u) ** 2 + 1e-6).sum(-1)
        return logp

    def sample(self, head, deterministic=False, mask=None):
        mean = head.reshape(head.shape[0], -1)
        u = mean if deterministic else mean + torch.exp(self.log_std) * torch.randn_like(mean)
        return u.reshape(-1, *self.action_shape), self._log_prob(mean, u)

    def log_prob_and_entropy(self, head, actions, mask=None):
        mean = head.reshape(head.shape[0], -1)
        logp = self._log_prob(mean, actions.reshape(mean.shape).to(mean.dtype))
        if self.squash:
            return logp, -logp
        entropy = (0.5 + 0.5 * math.log(2 * math.pi) + self.log_std).sum().expand(mean.shape[0])
        return logp, entropy

    @torch.no_grad()
    def scores(self, head, actions, mask=None):
        logp, entropy = self.log_prob_and_entropy(head, actions)
        return gaussian_scores(logp, entropy, head, actions, self.log_std, self.squash)

    def to_env(self, actions: torch.Tensor) -> np.ndarray:
        u = actions.reshape(actions.shape[0], -1)
        if self.squash:
            bounded = self.low + (torch.tanh(u) + 1) * (self.high - self.low) / 2
        else:
            bounded = torch.maximum(torch.minimum(u, self.high), self.low)
        return bounded.reshape(actions.shape).cpu().numpy()


def distribution_for(action_space: gym.Space | int, squash: bool = False) -> ActionDistribution:
    """The distribution of `action_space` (an int n: Discrete(n)); ConfigError naming the space
    when none fits."""
    if isinstance(action_space, (int, np.integer)):
        return CategoricalDistribution(int(action_space))
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalDistribution(int(action_space.n))
    if isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
        return MultiCategoricalDistribution(action_space.nvec.tolist())
    if isinstance(action_space, gym.spaces.MultiBinary) and len(action_space.shape) == 1:
        return BernoulliDistribution(int(action_space.shape[0]))
    if isinstance(action_space, gym.spaces.Box) and np.issubdtype(action_space.dtype, np.floating):
        if squash and not (np.isfinite(action_space.low).all() and np.isfinite(action_space.high).all()):
            raise ConfigError(f"network.squash: tanh needs finite action bounds, got {action_space}")
        return DiagGaussianDistribution(action_space.low, action_space.high, squash)
    raise ConfigError(
        f"action space {action_space} is not supported "
        "(Discrete, MultiDiscrete, MultiBinary and float Box are)"
    )
