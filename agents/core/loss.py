"""The PPO loss (Schulman et al. 2017, arXiv 1707.06347) of one minibatch: clipped surrogate or KL penalty."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class LossTerms:
    """The combined loss and its parts, for one minibatch."""

    loss: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor  # k3 estimate of KL(π_old ‖ π_θ): mean((r − 1) − log r)
    clip_fraction: torch.Tensor  # share of samples with |r − 1| > ε
    ref_kl: torch.Tensor  # k3 estimate of KL(π_θ ‖ π_ref) (0 without a reference policy)


def ppo_loss(
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
    ref_logp: torch.Tensor | None = None,
    ref_kl_coef: float = 0.0,
) -> LossTerms:
    """One combined PPO loss: L = −L_policy + c_v·L_value − c_e·H (+ β_ref·KL_ref).

    Policy term with r = exp(log π_θ − log π_old):
      clipped surrogate (kl_coef None): L_policy = mean(min(r·Â, clip(r, 1−ε, 1+ε)·Â));
      KL penalty (kl_coef = β):         L_policy = mean(r·Â − β·KL), with the per-sample
                                        KL(π_old ‖ π_θ) estimated by k3 = (r − 1) − log r.
    Value term: mean((V − R)²), or with clipping mean(max((V − R)², (V_clip − R)²)) where
    V_clip = V_old + clip(V − V_old, −ε, ε). No ½ factor: this is Stable-Baselines3's definition,
    so c_v means the same in both and their hyperparameters transfer unchanged (CleanRL's ½
    halves the effective c_v).
    Reference-policy term (RLHF, GRPO), with ρ = π_ref / π_θ per sampled token:
    KL_ref = mean(k3) = mean((ρ − 1) − log ρ), an unbiased, always non-negative estimate of
    KL(π_θ ‖ π_ref) (Schulman, "Approximating KL divergence").
    """
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    kl_per_sample = (ratio - 1) - log_ratio
    if kl_coef is None:
        surrogate = torch.min(ratio * advantages, ratio.clamp(1 - clip_coef, 1 + clip_coef) * advantages)
    else:
        surrogate = ratio * advantages - kl_coef * kl_per_sample
    policy_loss = -surrogate.mean()

    value_error = (new_values - returns) ** 2
    if clip_value_loss:
        clipped_values = old_values + (new_values - old_values).clamp(-clip_coef, clip_coef)
        value_error = torch.max(value_error, (clipped_values - returns) ** 2)
    value_loss = value_error.mean()

    mean_entropy = entropy.mean()
    loss = policy_loss + vf_coef * value_loss - ent_coef * mean_entropy
    ref_kl = torch.zeros(())
    if ref_logp is not None:
        ref_log_ratio = ref_logp - new_logp
        ref_kl = (ref_log_ratio.exp() - 1 - ref_log_ratio).mean()
        loss = loss + ref_kl_coef * ref_kl
    with torch.no_grad():
        approx_kl = kl_per_sample.mean()
        clip_fraction = ((ratio - 1).abs() > clip_coef).float().mean()
    return LossTerms(loss, policy_loss, value_loss, mean_entropy, approx_kl, clip_fraction, ref_kl.detach())


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 − Var(target − predicted) / Var(target); nan when the target has no variance."""
    var_target = target.var()
    if var_target == 0:
        return float("nan")
    return float(1 - (target - predicted).var() / var_target)
