"""RLHF pieces on top of the PPO core: reference policy, per-token KL penalty, adaptive β."""

from __future__ import annotations

import copy

import torch

from agents.networks.actor_critic import ActorCritic


def frozen_copy(agent: ActorCritic) -> ActorCritic:
    """The reference policy π_ref: a copy of the starting (SFT) policy that never trains."""
    reference = copy.deepcopy(agent)
    reference.eval()
    for parameter in reference.parameters():
        parameter.requires_grad_(False)
    return reference


@torch.inference_mode()
def reference_logp(reference: ActorCritic, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log π_ref(a|s) for a batch of stored observations and actions."""
    return reference.evaluate_actions(obs, actions)[0]


def kl_penalised_rewards(
    rewards: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """r_t − β·(log π(a_t|s_t) − log π_ref(a_t|s_t)): the k1 per-token KL penalty folded into the
    reward (Ziegler et al. 2019; InstructGPT). Its sum over a completion sampled from π is an
    unbiased estimate of β·KL(π ‖ π_ref) for that prompt."""
    return rewards - kl_coef * (logp - ref_logp)


class AdaptiveKLController:
    """Proportional control of β towards a target KL per completion (Ziegler et al. 2019):
    β ← β·(1 + clip(KL/target − 1, −0.2, 0.2)·n/horizon), n = completions in the batch."""

    def __init__(self, initial: float, target: float, horizon: int) -> None:
        self.value = initial
        self.target = target
        self.horizon = horizon

    def update(self, observed_kl: float, num_completions: int) -> float:
        error = min(max(observed_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * num_completions / self.horizon
        return self.value


class ReferencePolicy:
    """π_ref and the β of the KL to it, KL(π ‖ π_ref), which keeps an RL-tuned policy near its
    warm start. Estimator k1 folds −β(log π − log π_ref) into each token's reward (PPO, InstructGPT);
    k3 adds β·mean(k3) to the loss (agents/core/loss.py; GRPO always). With `controller`, β adapts
    to the measured KL per completion after every update."""

    def __init__(
        self,
        network: ActorCritic,
        coef: float,
        estimator: str,
        controller: AdaptiveKLController | None = None,
    ) -> None:
        self.network, self.coef, self.estimator, self.controller = network, coef, estimator, controller
        if controller is not None:
            controller.value = coef

    def logp(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return reference_logp(self.network, obs, actions)

    @property
    def in_reward(self) -> bool:
        return self.estimator == "k1"

    @property
    def loss_coef(self) -> float:
        """The weight of the k3 term in the loss: β with k3, 0 when the KL is in the reward."""
        return 0.0 if self.in_reward else self.coef

    def adapt(self, kl_per_completion: float, completions: int) -> None:
        if self.controller is not None and completions:
            self.coef = self.controller.update(kl_per_completion, completions)
