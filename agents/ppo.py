"""The PPO update (Schulman et al. 2017, arXiv 1707.06347): clipped surrogate or adaptive KL penalty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from agents.actor_critic import ActorCritic
from agents.config import PPOConfig


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


class AdaptiveKLCoefficient:
    """β of the KL-penalty PPO: after each update, β ← 2β if KL > 1.5·target, β ← β/2 if
    KL < target/1.5 (Schulman et al. 2017, section 4)."""

    def __init__(self, initial: float, target: float) -> None:
        self.value = initial
        self.target = target

    def update(self, observed_kl: float) -> float:
        if observed_kl > 1.5 * self.target:
            self.value *= 2.0
        elif observed_kl < self.target / 1.5:
            self.value /= 2.0
        return self.value


def explained_variance(predicted: torch.Tensor, target: torch.Tensor) -> float:
    """1 − Var(target − predicted) / Var(target); nan when the target has no variance."""
    var_target = target.var()
    if var_target == 0:
        return float("nan")
    return float(1 - (target - predicted).var() / var_target)


def _minibatch_indices(
    batch: dict[str, torch.Tensor], num_minibatches: int, generator: torch.Generator
) -> list[torch.Tensor]:
    """A shuffled split of the batch into minibatches covering every sample once (of whole
    episodes when the batch has episode ids)."""
    if "episode" not in batch:
        order = torch.randperm(batch["actions"].shape[0], generator=generator)
        # tensor_split covers every sample even when the batch does not divide evenly.
        return list(torch.tensor_split(order, num_minibatches))
    episode_ids, episode_of_sample = torch.unique(batch["episode"], return_inverse=True)
    episode_order = torch.randperm(len(episode_ids), generator=generator)
    minibatch_of_episode = torch.empty_like(episode_order)
    for number, chunk in enumerate(torch.tensor_split(episode_order, num_minibatches)):
        minibatch_of_episode[chunk] = number
    minibatch_of_sample = minibatch_of_episode[episode_of_sample]
    return [idx for n in range(num_minibatches) if len(idx := torch.nonzero(minibatch_of_sample == n).squeeze(1))]


def ppo_update(
    agent: ActorCritic,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    config: PPOConfig,
    clip_coef: float,
    kl_coef: float | None,
    generator: torch.Generator,
    ref_kl_coef: float = 0.0,
    extra_loss: Callable[[], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Several epochs of shuffled minibatch gradient steps on one rollout batch.

    `batch` holds flat tensors: obs, actions, logp, values, advantages, returns; optionally
    ref_logp (log π_ref of the actions, for the KL-to-reference loss term) and episode (an id per
    sample: minibatches are then made of whole episodes, so a sequence model evaluates each
    sequence once). Every sample is visited once per epoch; advantages are normalised per
    minibatch; the global gradient norm is clipped; with `target_kl`, the epochs stop early once
    the approximate KL passes it. `extra_loss`, if given, is called once per minibatch and its
    value added to that minibatch's loss before the backward pass (PPO-ptx: agents/ptx.py); its
    mean is returned as "extra_loss". Returns the mean of each logged quantity over the minibatches,
    and "approx_kl_last_epoch": the mean approximate KL over the last epoch's minibatches only,
    which is what Stable-Baselines3 logs as train/approx_kl. In training the KL grows over the
    epochs from 0 at the first minibatch, so the all-epoch mean "approx_kl" is typically the
    smaller number (about half on Pong).
    """
    sums: dict[str, float] = {}
    count = 0
    stop = False
    for _ in range(config.update_epochs):
        epoch_kls: list[float] = []
        for idx in _minibatch_indices(batch, config.num_minibatches, generator):
            new_logp, entropy, new_values = agent.evaluate_actions(batch["obs"][idx], batch["actions"][idx])
            advantages = batch["advantages"][idx]
            if config.norm_adv and advantages.numel() > 1:
                advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
            terms = ppo_loss(
                new_logp,
                batch["logp"][idx],
                advantages,
                new_values,
                batch["values"][idx],
                batch["returns"][idx],
                entropy,
                clip_coef=clip_coef,
                vf_coef=config.vf_coef,
                ent_coef=config.ent_coef,
                clip_value_loss=config.clip_value_loss,
                kl_coef=kl_coef,
                ref_logp=batch["ref_logp"][idx] if "ref_logp" in batch else None,
                ref_kl_coef=ref_kl_coef,
            )
            loss = terms.loss
            if extra_loss is not None:
                extra = extra_loss()
                loss = loss + extra
                sums["extra_loss"] = sums.get("extra_loss", 0.0) + extra.item()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), config.max_grad_norm)
            optimizer.step()

            for name in ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "ref_kl"):
                sums[name] = sums.get(name, 0.0) + getattr(terms, name).item()
            epoch_kls.append(terms.approx_kl.item())
            count += 1
            if config.target_kl is not None and float(terms.approx_kl) > config.target_kl:
                stop = True
                break
        if stop:
            break
    metrics = {name: total / count for name, total in sums.items()}
    metrics["approx_kl_last_epoch"] = sum(epoch_kls) / len(epoch_kls)
    metrics["explained_variance"] = explained_variance(batch["values"], batch["returns"])
    metrics["epochs_run"] = float(count) / config.num_minibatches
    return metrics
