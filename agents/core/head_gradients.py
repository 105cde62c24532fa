"""The PPO loss of a categorical policy, differentiated by hand with respect to the network's two
outputs: its logits and V(s).

It is the loss of agents/core/loss.py's ppo_loss on agents/networks/distributions.py's
log_prob_and_entropy, with the same value and, to float rounding, the same gradients. Autograd
records about thirty small operations for that loss and runs each backwards: on CartPole, a
quarter of an update step. Here the two gradients take a dozen operations, and autograd runs only
through the network, from ∂L/∂logits and ∂L/∂V.

With B samples, p = softmax(logits), log π(a|s) = log p_a and r = exp(log π(a|s) − log π_old):
  ∂ log π(a|s) / ∂logits_j = 1[j = a] − p_j
  ∂H / ∂logits_j = −p_j (log p_j + H)                      (H = −Σ_j p_j log p_j)
  ∂L / ∂ log π(a|s) = −(1/B) · ∂surrogate/∂ log r, where ∂surrogate/∂ log r is
      r·Â where min(r·Â, clip(r)·Â) takes its first term, or the two are equal (clip(r) = r inside
      [1 − ε, 1 + ε], where clip passes its gradient), and 0 where the clipped term is smaller;
      r·Â − β(r − 1) with the KL penalty (kl_coef = β; ∂k3/∂ log r = r − 1).
  ∂L / ∂V = (c_v/B) · 2(V − R); with value clipping, torch.max's rule: the gradient goes to the
      larger of (V − R)² and (V_clip − R)², half to each on a tie, and through V_clip only where
      clip(V − V_old, −ε, ε) is inside its range.
"""

from __future__ import annotations

import torch

from agents.core.loss import LossTerms


@torch.no_grad()
def categorical_ppo_gradients(
    logits: torch.Tensor,
    actions: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    *,
    clip_coef: float,
    vf_coef: float,
    ent_coef: float,
    clip_value_loss: bool = True,
    kl_coef: float | None = None,
) -> tuple[LossTerms, torch.Tensor, torch.Tensor]:
    """(ppo_loss's terms, ∂L/∂logits [B, n], ∂L/∂V [B]) for a softmax policy over `logits` (masked
    actions already at the dtype's minimum logit), without a reference-policy term."""
    count = logits.shape[0]
    log_probs = logits.log_softmax(dim=-1)
    probs = log_probs.exp()
    chosen = actions.long().reshape(-1, 1)
    log_ratio = log_probs.gather(-1, chosen).squeeze(-1) - old_logp
    ratio = log_ratio.exp()
    kl_per_sample = (ratio - 1) - log_ratio
    if kl_coef is None:
        unclipped = ratio * advantages
        clipped = ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages
        surrogate = torch.min(unclipped, clipped)
        d_surrogate = torch.where(unclipped <= clipped, unclipped, 0.0)
    else:
        surrogate = ratio * advantages - kl_coef * kl_per_sample
        d_surrogate = ratio * advantages - kl_coef * (ratio - 1)
    d_logp = d_surrogate * (-1.0 / count)
    d_logits = probs * -d_logp.unsqueeze(-1)
    d_logits.scatter_add_(-1, chosen, d_logp.unsqueeze(-1))

    entropy = -(probs * log_probs).sum(dim=-1)
    if ent_coef:
        d_logits += (ent_coef / count) * probs * (log_probs + entropy.unsqueeze(-1))

    error = new_values - returns
    value_error = error.square()
    if clip_value_loss:
        step = new_values - old_values
        clipped_error = old_values + step.clamp(-clip_coef, clip_coef) - returns
        clipped_value_error = clipped_error.square()
        to_unclipped = torch.where(
            value_error > clipped_value_error, 1.0, torch.where(value_error < clipped_value_error, 0.0, 0.5)
        )
        inside = (step >= -clip_coef) & (step <= clip_coef)
        d_value_error = 2 * error * to_unclipped + 2 * clipped_error * (1 - to_unclipped) * inside
        value_error = torch.max(value_error, clipped_value_error)
    else:
        d_value_error = 2 * error
    d_values = d_value_error * (vf_coef / count)

    policy_loss = -surrogate.mean()
    value_loss = value_error.mean()
    mean_entropy = entropy.mean()
    terms = LossTerms(
        loss=policy_loss + vf_coef * value_loss - ent_coef * mean_entropy,
        policy_loss=policy_loss,
        value_loss=value_loss,
        entropy=mean_entropy,
        approx_kl=kl_per_sample.mean(),
        clip_fraction=((ratio - 1).abs() > clip_coef).float().mean(),
        ref_kl=torch.zeros(()),
    )
    return terms, d_logits, d_values
