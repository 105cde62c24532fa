"""The learning side of a run: what a PPO update reads and changes, and what a checkpoint saves
of it. The agent and its optimizer, the minibatch sampler, the two βs (of the KL-penalty loss and
of the KL to a reference policy), π_ref, the PPO-ptx term, the non-finite guards, and the
generators that training draws from."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from agents.config import TrainConfig, config_to_dict
from agents.core.batch import Batch
from agents.core.schedules import KLPenaltyCoefficient
from agents.core.update import GradientSync, NonFiniteGradient, ShuffledMinibatches, ppo_update
from agents.networks.transformer import TransformerActorCritic
from agents.rlhf.reference import ReferencePolicy
from agents.run import setup
from agents.run.checkpoint import CheckpointError, mismatch_error
from agents.run.collectors import Rollout
from agents.run.faults import FiniteChecks, NonFiniteError
from agents.run.resume import ResumePoint
from agents.run.state import TrainState, capture_rng, restore_rng


class Learner:
    """Built with every check that bad input can fail, before anything is written."""

    def __init__(
        self,
        config: TrainConfig,
        envs: setup.Envs,
        device: torch.device,
        saved_config: TrainConfig | None = None,
    ) -> None:
        """`saved_config`: the run's config as checkpoints record it, where `config` is one rank's
        share of it (torchrun, agents/run/distributed.py)."""
        self.config, self.device = config, device
        self.saved_config = saved_config or config
        self.sync: GradientSync | None = None  # data-parallel training: averages over the ranks
        self.agent = setup.make_agent(config, envs, device)
        setup.check_trainable(config, self.agent)
        self.mask_size = setup.action_mask_size(config, envs)  # n with invalid-action masking, else None
        self.optimizer = setup.make_optimizer(config, self.agent)
        self.spaces = setup.model_spaces(config, envs)  # saved with the model: predict needs no env
        self.finite_checks = FiniteChecks(self.agent)
        self.minibatch_rng = torch.Generator().manual_seed(config.seed)
        self.minibatches = ShuffledMinibatches(self.minibatch_rng)
        # GRPO's prompts and PPO-ptx's corpus batches: one generator, saved in checkpoints, so a
        # resumed run draws the same prompts and batches.
        self.prompt_rng = np.random.default_rng(config.seed)
        self.ptx = setup.make_ptx(config, self.agent, self.prompt_rng)  # −γ_ptx·LL joins every minibatch loss
        ppo = config.ppo
        self.kl_penalty = (
            KLPenaltyCoefficient(ppo.kl_penalty_coef, ppo.kl_penalty_target)
            if ppo.loss == "kl_penalty"
            else None
        )
        self.reference: ReferencePolicy | None = None  # π_ref (RLHF): made by warm_start, or restored

    def warm_start(self, writer: SummaryWriter) -> None:
        """SFT and/or rlhf.init_checkpoint before RL, then π_ref where the config uses one."""
        warm_started = setup.warm_start(self.config, self.agent, self.device, writer)
        if setup.uses_reference(self.config, warm_started):
            self.reference = setup.make_reference(self.config, self.agent, self.config.rlhf.kl_coef)

    def update(self, batch: Batch, lr: float, clip_coef: float) -> dict[str, float]:
        """One PPO update at this learning rate and clip ε; its metrics, checked to be finite."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.agent.train()
        try:
            metrics = ppo_update(
                self.agent, self.optimizer, batch, self.config.ppo, clip_coef,
                self.kl_penalty.value if self.kl_penalty else None, self.minibatches,
                ref_kl_coef=self.reference.loss_coef if self.reference else 0.0, extra_loss=self.ptx,
                sync=self.sync,
            )
        except NonFiniteGradient as exc:
            raise NonFiniteError(f"gradient in {exc.parameter}") from None
        self.finite_checks.check_update(metrics)
        return metrics

    def adapt_coefficients(
        self, metrics: dict[str, float], rollout: Rollout, lengths: Any
    ) -> dict[str, float]:
        """Move the βs after an update; returns their scalars (each β as it was in this update).

        rlhf/kl is KL(π ‖ π_ref) per completion: mean per-token k1 × mean completion length
        (`lengths`: of the episode window)."""
        scalars: dict[str, float] = {}
        if self.kl_penalty is not None:
            scalars["train/kl_coef"] = self.kl_penalty.value
            self.kl_penalty.update(metrics["approx_kl"])
        if isinstance(self.agent, TransformerActorCritic):
            length = float(np.mean(lengths)) if lengths else 0.0
            scalars["rlhf/response_length"] = length
            if rollout.token_kl is not None:
                kl = rollout.token_kl * length
                scalars["rlhf/kl"], scalars["rlhf/kl_coef"] = kl, self.reference.coef
                self.reference.adapt(kl, rollout.completions)
        return scalars

    def capture(
        self, update: int, global_step: int, episodes: dict, texts: list[str], normalization: dict | None
    ) -> TrainState:
        return TrainState(
            update=update,
            global_step=global_step,
            ref_kl_coef=self.reference.coef if self.reference else self.config.rlhf.kl_coef,
            kl_penalty_coef=self.kl_penalty.value if self.kl_penalty else None,
            rng=capture_rng(self.minibatch_rng, self.prompt_rng, self.device),
            episodes=episodes,
            texts=texts,
            normalization=normalization,
        )

    def checkpoint(self, state: TrainState) -> dict[str, Any]:
        """What a checkpoint file holds: networks, optimizer, config and `state`."""
        reference = self.reference.network.state_dict() if self.reference else None
        return {
            "model": self.agent.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "reference": reference,
            "config": config_to_dict(self.saved_config),
            "spaces": self.spaces,
            **state.to_checkpoint(),
        }

    def restore(self, point: ResumePoint) -> TrainState:
        """Load a checkpoint: networks, optimizer, βs, generators; return its TrainState. Refuses
        one that does not fit, before anything is written."""
        checkpoint = point.state
        try:
            self.agent.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise mismatch_error(point.checkpoint, exc) from None
        try:
            state = TrainState.from_checkpoint(checkpoint)
            # Nothing draws random numbers between here and the first rollout.
            restore_rng(state.rng, self.minibatch_rng, self.prompt_rng)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(f"{point.checkpoint} holds a malformed resume state: {exc!r}") from None
        if checkpoint.get("reference") is not None:
            self.reference = setup.make_reference(self.config, self.agent, state.ref_kl_coef)
            try:
                self.reference.network.load_state_dict(checkpoint["reference"])
            except (RuntimeError, ValueError, KeyError, TypeError) as exc:
                raise mismatch_error(point.checkpoint, exc) from None
        if self.kl_penalty is not None and state.kl_penalty_coef is not None:
            self.kl_penalty.value = state.kl_penalty_coef
        return state
