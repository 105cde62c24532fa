"""What changes over a run between updates: the annealed step size and clip range, and the β of
the KL-penalty loss."""

from __future__ import annotations

from agents.config import PPOConfig


def remaining_fraction(global_step: int, total_timesteps: int) -> float:
    """1 − step / total: the share of training left, 1 at the start, → 0 at the end."""
    return 1.0 - global_step / total_timesteps


def annealed(ppo: PPOConfig, global_step: int, total_timesteps: int) -> tuple[float, float]:
    """(learning rate, clip ε) for the update starting at `global_step`: linearly annealed with the
    remaining fraction where `anneal_lr` / `anneal_clip` say so, constant otherwise."""
    frac = remaining_fraction(global_step, total_timesteps)
    lr = ppo.learning_rate * frac if ppo.anneal_lr else ppo.learning_rate
    clip_coef = ppo.clip_coef * frac if ppo.anneal_clip else ppo.clip_coef
    return lr, clip_coef


class KLPenaltyCoefficient:
    """β of the KL-penalty PPO loss (`ppo.loss: kl_penalty`): after each update, β ← 2β if
    KL > 1.5·target, β ← β/2 if KL < target/1.5 (Schulman et al. 2017, section 4). Not to be
    confused with the β of the KL to a reference policy (agents/rlhf/reference.py)."""

    def __init__(self, initial: float, target: float) -> None:
        self.value = initial
        self.target = target

    def update(self, observed_kl: float) -> float:
        if observed_kl > 1.5 * self.target:
            self.value *= 2.0
        elif observed_kl < self.target / 1.5:
            self.value /= 2.0
        return self.value
