"""log π(a|s) and H(π(·|s)) of each action distribution, with their derivatives in closed form.

An ActionDistribution's `scores(head, actions)` returns one of these: the numbers its
log_prob_and_entropy computes (no autograd graph), and the way back from a loss's ∂L/∂ log π(a|s)
and ∂L/∂H (per row, [B]; None: the loss has no entropy term) to ∂L/∂head and to the
distribution's own parameters. The PPO update (agents/core/loss_gradients.py) uses them to
backpropagate through the network alone (ActorCritic.outputs_for_update). Derivatives, per row:

- categorical over logits l (π = softmax l):  ∂ log π_a/∂l_j = 1[j = a] − π_j,
  ∂H/∂l_j = −π_j (log π_j + H); a masked logit is replaced by the dtype's minimum and gets 0;
- independent categoricals (MultiDiscrete): log π and H are sums, so each slice of the head gets
  its own categorical's derivatives with the same ∂L/∂ log π and ∂L/∂H;
- Bernoulli bits, logit x, p = σ(x):  ∂ log π/∂x = a − p,  ∂H/∂x = −x p (1 − p);
- diagonal Gaussian N(μ, σ²), μ the head, log σ a parameter:  ∂ log π/∂μ = (u − μ)/σ²,
  ∂ log π/∂ log σ = (u − μ)²/σ² − 1, ∂H/∂ log σ = 1 per row; squashed, H is estimated by −log π,
  so its derivatives are −∂ log π.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class HeadScores:
    """log π(a|s) and H(π(·|s)) per row, and their derivatives."""

    logp: torch.Tensor
    entropy: torch.Tensor

    def head_gradient(self, d_logp: torch.Tensor, d_entropy: torch.Tensor | None) -> torch.Tensor:
        """∂L/∂head, shaped as the head."""
        raise NotImplementedError

    def parameter_gradients(
        self, d_logp: torch.Tensor, d_entropy: torch.Tensor | None
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(parameter, ∂L/∂parameter) for the distribution's own parameters (none by default)."""
        return []


@dataclass
class CategoricalScores(HeadScores):
    log_probs: torch.Tensor  # log π(·|s), [B, n]
    actions: torch.Tensor  # [B, 1], long
    mask: torch.Tensor | None  # valid actions, [B, n] bool

    @torch.no_grad()
    def head_gradient(self, d_logp, d_entropy):
        probs = self.log_probs.exp()
        if d_entropy is None:
            d_logits = probs * -d_logp.unsqueeze(-1)
        else:
            d_logits = probs * -(d_logp + d_entropy * self.entropy).unsqueeze(-1)
            d_logits -= d_entropy.unsqueeze(-1) * probs * self.log_probs
        d_logits.scatter_add_(-1, self.actions, d_logp.unsqueeze(-1))
        # Masking replaces a logit, so nothing flows back to it: this matters where π_j ≠ 0 anyway
        # (a row with every action masked is uniform) or at a masked action that was taken.
        return d_logits if self.mask is None else d_logits.masked_fill_(~self.mask, 0.0)


def categorical_terms(
    logits: torch.Tensor, actions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(log π(·|s) [B, n], the actions as indices [B, 1], log π(a|s), H = −Σ_a π log π) per row of
    `logits`: the one computation behind a categorical's log_prob_and_entropy and its scores."""
    log_probs = logits.log_softmax(dim=-1)
    chosen = actions.long().reshape(-1, 1)
    entropy = -(log_probs.exp() * log_probs).sum(dim=-1)
    return log_probs, chosen, log_probs.gather(-1, chosen).squeeze(-1), entropy


@torch.no_grad()
def categorical_scores(
    logits: torch.Tensor, actions: torch.Tensor, mask: torch.Tensor | None = None
) -> CategoricalScores:
    """CategoricalScores for `logits` (masked already by `mask`) and `actions`."""
    log_probs, chosen, logp, entropy = categorical_terms(logits, actions)
    return CategoricalScores(logp, entropy, log_probs, chosen, mask)


@dataclass
class SummedScores(HeadScores):
    """Independent parts over consecutive slices of the head: log π and H are the parts' sums."""

    parts: list[HeadScores]

    @torch.no_grad()
    def head_gradient(self, d_logp, d_entropy):
        return torch.cat([part.head_gradient(d_logp, d_entropy) for part in self.parts], dim=-1)


@dataclass
class BernoulliScores(HeadScores):
    logits: torch.Tensor  # x, [B, n]
    bits: torch.Tensor  # a, [B, n] in the head's dtype

    @torch.no_grad()
    def head_gradient(self, d_logp, d_entropy):
        p = torch.sigmoid(self.logits)
        d_logits = (self.bits - p) * d_logp.unsqueeze(-1)
        if d_entropy is not None:
            d_logits -= (self.logits * p * (1 - p)) * d_entropy.unsqueeze(-1)
        return d_logits


@dataclass
class GaussianScores(HeadScores):
    error_over_variance: torch.Tensor  # (u − μ)/σ², [B, d]: ∂ log π/∂μ
    z_squared: torch.Tensor  # (u − μ)²/σ², [B, d]: ∂ log π/∂ log σ + 1
    log_std: torch.Tensor  # the distribution's parameter log σ, [d]
    squashed: bool
    head_shape: torch.Size

    def _d_log_pi(self, d_logp: torch.Tensor, d_entropy: torch.Tensor | None) -> torch.Tensor:
        # A squashed Gaussian's entropy is −log π of the sample: its weight joins log π's, negated.
        return d_logp - d_entropy if self.squashed and d_entropy is not None else d_logp

    @torch.no_grad()
    def head_gradient(self, d_logp, d_entropy):
        d_mean = self.error_over_variance * self._d_log_pi(d_logp, d_entropy)[:, None]
        return d_mean.reshape(self.head_shape)

    @torch.no_grad()
    def parameter_gradients(self, d_logp, d_entropy):
        d_log_std = ((self.z_squared - 1) * self._d_log_pi(d_logp, d_entropy)[:, None]).sum(0)
        if d_entropy is not None and not self.squashed:
            d_log_std += d_entropy.sum()
        return [(self.log_std, d_log_std)]


@torch.no_grad()
def gaussian_scores(
    logp: torch.Tensor, entropy: torch.Tensor, head: torch.Tensor, actions: torch.Tensor,
    log_std: torch.Tensor, squashed: bool,
) -> GaussianScores:
    """GaussianScores for the mean `head` [B, *shape], the stored actions u and log σ, given the
    distribution's own log π and H."""
    mean = head.reshape(head.shape[0], -1)
    error = actions.reshape(mean.shape).to(mean.dtype) - mean
    error_over_variance = error * torch.exp(-2 * log_std)
    return GaussianScores(logp, entropy, error_over_variance, error_over_variance * error, log_std, squashed,
                          head.shape)
