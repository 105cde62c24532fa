"""The PPO loss differentiated by hand with respect to what the network and its action distribution
output: log π(a|s), the entropy H and V(s), per sample.

It is agents/core/loss.py's ppo_loss without a reference-policy term, with the same value and, to
float rounding, the same gradients. Autograd records about twenty small operations for that loss
and runs each backwards; here the gradients take a handful. The action distribution carries
∂L/∂ log π and ∂L/∂H on to its head and its own parameters (agents/networks/head_scores.py), and
autograd runs through the network alone: on CartPole that saves a quarter of an update step.

With B samples and r = exp(log π(a|s) − log π_old):
  ∂L/∂ log π(a|s) = −(1/B) · ∂surrogate/∂ log r, where ∂surrogate/∂ log r is
      r·Â where min(r·Â, clip(r)·Â) takes its first term, 0 where it takes the clipped one, and on
      a tie torch.min's half to each: r·Â inside [1 − ε, 1 + ε] (where clip(r) = r passes its
      gradient), ½·r·Â outside (where the two only round to the same number);
      r·Â − β(r − 1) with the KL penalty (kl_coef = β; ∂k3/∂ log r = r − 1).
  ∂L/∂H = −c_e/B.
  ∂L/∂V = (c_v/B) · 2(V − R); with value clipping, torch.max's rule: the gradient goes to the
      larger of (V − R)² and (V_clip − R)², half to each on a tie, and through V_clip only where
      clip(V − V_old, −ε, ε) is inside its range.
"""

from __future__ import annotations

import torch

from agents.core.loss import LossTerms


@torch.no_grad()
def ppo_loss_gradients(
    new_logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    new_values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    entropy: torch.Tensor,
    *,
    clip_coef: float,
    vf_coef: float,
    ent_coef: float,
    clip_value_loss: bool = True,
    kl_coef: float | None = None,
) -> tuple[LossTerms, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(ppo_loss's terms, ∂L/∂ log π(a|s), ∂L/∂H or None when c_e = 0, ∂L/∂V), each [B]."""
    count = new_logp.shape[0]
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    kl_per_sample = (ratio - 1) - log_ratio
    if kl_coef is None:
        unclipped = ratio * advantages
        clipped = ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages
        surrogate = torch.min(unclipped, clipped)
        # The share of ∂(r·Â) that torch.min passes on: all of it where the unclipped term is the
        # smaller, none where it is the larger; on a tie half through each term, and the clipped
        # one passes its half on only inside the clip range. NaN compares as a tie: it stays NaN,
        # for the non-finite gradient check to find.
        ratio_inside = (ratio >= 1 - clip_coef) & (ratio <= 1 + clip_coef)
        on_tie = torch.where(ratio_inside, 1.0, 0.5)
        share = torch.where(unclipped < clipped, 1.0, torch.where(unclipped > clipped, 0.0, on_tie))
        d_surrogate = unclipped * share
    else:
        surrogate = ratio * advantages - kl_coef * kl_per_sample
        d_surrogate = ratio * advantages - kl_coef * (ratio - 1)
    d_logp = d_surrogate * (-1.0 / count)
    d_entropy = torch.full_like(entropy, -ent_coef / count) if ent_coef else None

    error = new_values - returns
    value_error = error.square()
    if clip_value_loss:
        step = new_values - old_values
        clipped_error = old_values + step.clamp(-clip_coef, clip_coef) - returns
        clipped_value_error = clipped_error.square()
        to_unclipped = torch.where(
            value_error > clipped_value_error, 1.0, torch.where(value_error < clipped_value_error, 0.0, 0.5)
        )
        step_inside = (step >= -clip_coef) & (step <= clip_coef)
        d_value_error = 2 * error * to_unclipped + 2 * clipped_error * (1 - to_unclipped) * step_inside
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
    return terms, d_logp, d_entropy, d_values
