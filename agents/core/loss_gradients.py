"""The PPO loss differentiated by hand with respect to what the network and its action distribution
output: log π(a|s), the entropy H and V(s), per sample.

It is agents/core/loss.py's ppo_loss without a reference-policy term, with the same value and, to
float rounding, the same gradients. Autograd records about twenty small operations for that loss
and runs each backwards; here the gradients take a handful. The action distribution carries
∂L/∂ log π and ∂L/∂H on to its head and its own parameters (agents/networks/head_scores.py), and
the network takes it from there (ActorCritic.outputs_for_update: autograd through the network
alone, or the MLP's own backward pass): on CartPole that saves a quarter of an update step.

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

import numpy as np
import torch

from agents.core.loss import LossTerms


class TorchOps:
    """The array functions the loss gradients use, on torch tensors."""

    minimum, maximum, clip, where = torch.minimum, torch.maximum, torch.clip, torch.where
    full_like = torch.full_like

    @staticmethod
    def constants(like: torch.Tensor) -> tuple[float, float, float]:
        """1, ½ and 0 as torch.where takes them."""
        return 1.0, 0.5, 0.0

    @staticmethod
    def mean(x: torch.Tensor) -> torch.Tensor:
        return x.mean()

    @staticmethod
    def fraction(flags: torch.Tensor) -> torch.Tensor:
        return flags.float().mean()

    @staticmethod
    def as_terms(means: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return means


class NumpyOps:
    """The same functions on numpy arrays, for CPU tensors seen through numpy views: on a
    minibatch of a few hundred samples a numpy op costs about a microsecond and a torch op three
    to five, and the per-sample arithmetic is the same IEEE operations, so the gradients are
    bitwise torch's (tests/test_loss_gradients.py). The means that are only logged (loss, its
    parts, entropy) are numpy's and may differ from torch's in the last bit."""

    minimum, maximum, clip, where = np.minimum, np.maximum, np.clip, np.where
    full_like = np.full_like

    @staticmethod
    def constants(like: np.ndarray) -> tuple[np.floating, np.floating, np.floating]:
        """1, ½ and 0 in the arrays' dtype (np.where would make float64 arrays of Python floats)."""
        scalar = like.dtype.type
        return scalar(1.0), scalar(0.5), scalar(0.0)

    @staticmethod
    def mean(x: np.ndarray) -> np.floating:
        return np.add.reduce(x) / x.shape[0]  # np.mean's sum and division, without its Python layer

    @staticmethod
    def fraction(flags: np.ndarray) -> np.floating:
        return np.float32(np.count_nonzero(flags)) / np.float32(flags.shape[0])  # a float32 share, as torch's

    @staticmethod
    def as_terms(means: dict[str, np.floating]) -> dict[str, torch.Tensor]:
        """The means as 0-dim tensors, made in one call rather than one per value (the float32
        clip fraction apart: it keeps its own dtype)."""
        names = [name for name in means if name != "clip_fraction"]
        values = torch.from_numpy(np.array([means[name] for name in names])).unbind()
        return {**dict(zip(names, values)), "clip_fraction": torch.as_tensor(means["clip_fraction"])}


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
    ops: type[TorchOps] | type[NumpyOps] | None = None,
) -> tuple[LossTerms, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(ppo_loss's terms, ∂L/∂ log π(a|s), ∂L/∂H or None when c_e = 0, ∂L/∂V), each [B].

    `ops`: the array library the per-sample arithmetic runs in; by default numpy for CPU tensors
    (views of the same memory) and torch otherwise. The exponential stays torch's either way."""
    count = new_logp.shape[0]
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    inputs = (log_ratio, ratio, advantages, new_values, old_values, returns, entropy)
    if ops is None:
        ops = NumpyOps if all(x.device.type == "cpu" for x in inputs) else TorchOps
    if ops is NumpyOps:
        inputs = tuple(x.numpy() for x in inputs)
    log_ratio, ratio, advantages, new_values, old_values, returns, entropy = inputs
    one, half, zero = ops.constants(ratio)
    kl_per_sample = (ratio - 1) - log_ratio
    if kl_coef is None:
        unclipped = ratio * advantages
        clipped = ops.clip(ratio, 1 - clip_coef, 1 + clip_coef) * advantages
        surrogate = ops.minimum(unclipped, clipped)
        # The share of ∂(r·Â) that torch.min passes on: all of it where the unclipped term is the
        # smaller, none where it is the larger; on a tie half through each term, and the clipped
        # one passes its half on only inside the clip range. NaN compares as a tie: it stays NaN,
        # for the non-finite gradient check to find.
        ratio_inside = (ratio >= 1 - clip_coef) & (ratio <= 1 + clip_coef)
        on_tie = ops.where(ratio_inside, one, half)
        share = ops.where(unclipped < clipped, one, ops.where(unclipped > clipped, zero, on_tie))
        d_surrogate = unclipped * share
    else:
        surrogate = ratio * advantages - kl_coef * kl_per_sample
        d_surrogate = ratio * advantages - kl_coef * (ratio - 1)
    d_logp = d_surrogate * (-1.0 / count)
    d_entropy = ops.full_like(entropy, -ent_coef / count) if ent_coef else None

    error = new_values - returns
    value_error = error * error
    if clip_value_loss:
        step = new_values - old_values
        clipped_error = old_values + ops.clip(step, -clip_coef, clip_coef) - returns
        clipped_value_error = clipped_error * clipped_error
        to_unclipped = ops.where(
            value_error > clipped_value_error, one, ops.where(value_error < clipped_value_error, zero, half)
        )
        step_inside = (step >= -clip_coef) & (step <= clip_coef)
        d_value_error = 2 * error * to_unclipped + 2 * clipped_error * (1 - to_unclipped) * step_inside
        value_error = ops.maximum(value_error, clipped_value_error)
    else:
        d_value_error = 2 * error
    d_values = d_value_error * (vf_coef / count)

    policy_loss = -ops.mean(surrogate)
    value_loss = ops.mean(value_error)
    mean_entropy = ops.mean(entropy)
    means = dict(
        loss=policy_loss + vf_coef * value_loss - ent_coef * mean_entropy,
        policy_loss=policy_loss,
        value_loss=value_loss,
        entropy=mean_entropy,
        clip_fraction=ops.fraction(abs(ratio - 1) > clip_coef),
    )
    gradients = (d_logp, d_entropy, d_values)
    if ops is NumpyOps:
        gradients = tuple(None if g is None else torch.from_numpy(g) for g in gradients)
    # torch's mean even for numpy arrays: approx_kl decides target_kl's early stop and the KL
    # penalty's β, so it must round as on any other device; the other means are only logged.
    approx_kl = torch.as_tensor(kl_per_sample).mean()
    terms = LossTerms(**ops.as_terms(means), approx_kl=approx_kl, ref_kl=torch.zeros(()))
    return terms, *gradients
