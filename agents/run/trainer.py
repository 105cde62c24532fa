"""The on-policy training loop: schedule → collect → PPO update → log → callbacks.

One loop for every kind of game. The collector decides how a batch is played (agents/run/collectors.py:
PPO's GAE segments or GRPO's prompt groups); callbacks (agents/run/callbacks.py) do what happens
between updates besides learning; agents/run/setup.py builds the pieces.

Reliability (agents/run/resume.py, agents/run/faults.py): a checkpoint holds the networks, the
optimizer and a TrainState (agents/run/state.py), everything the loop needs to go on; a run
resumes from its newest good one. SIGINT/SIGTERM stop at the next safe point with a checkpoint; a
non-finite gradient, loss or weight stops the run before it is saved; an env that raises or dies
stops it after a checkpoint of the last completed update.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from agents.config import TrainConfig, config_to_dict
from agents.core.schedules import KLPenaltyCoefficient, annealed
from agents.core.update import ShuffledMinibatches, ppo_update
from agents.networks.actor_critic import ActorCritic
from agents.networks.build import resolve_device
from agents.networks.transformer import TransformerActorCritic
from agents.run import setup
from agents.run.checkpoint import (
    FINAL_CHECKPOINT,
    CheckpointError,
    mismatch_error,
    prune_checkpoints,
    save_checkpoint,
    update_checkpoint_name,
)
from agents.run.collectors import EpisodeRecorder, Rollout
from agents.run.faults import (
    EnvFailure,
    FiniteChecks,
    NonFiniteError,
    StopRequested,
    StopSignals,
    TrainingFailed,
    TrainingInterrupted,
    close_envs,
    signal_name,
    stop_signals_ignored,
)
from agents.run.logger import TrainingLogger, train_scalars
from agents.run.resume import ResumePoint, env_reset_seed, report_skipped_checkpoints
from agents.run.run_dir import CHECKPOINT_DIR, prepare_run_dir
from agents.run.state import TrainState, capture_rng, restore_rng


@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    mean_return: float  # mean over the last `stats_window` episodes
    episodes: int
    wall_time: float  # seconds from building the agent to the final checkpoint (SFT included)
    agent: ActorCritic  # the trained network, as saved in the final checkpoint
    train_time: float  # seconds of the training loop alone (what time/fps divides by)


def train(
    config: TrainConfig, config_name: str = "config", progress: bool = True, resume: ResumePoint | None = None
) -> TrainResult:
    """Train `config`, or with `resume` continue that run from its checkpoint; writes config.yaml,
    TensorBoard events and checkpoints in run_dir.

    Raises ConfigError or CheckpointError on bad input (before anything is written),
    TrainingInterrupted after SIGINT/SIGTERM and TrainingFailed when the run cannot go on.
    """
    setup.seed_everything(config.seed)
    device = resolve_device(config.device)
    with StopSignals() as stop:
        # Everything that can fail on bad input happens before anything is written to disk.
        with stop_signals_ignored():  # the trainer stops its env workers itself, after its checkpoint
            envs = setup.make_training_envs(config)
        trainer = None
        try:
            trainer = Trainer(config, envs, device, stop, resume)
            return trainer.train(config_name, progress)
        finally:
            close_envs(envs, failed=trainer is not None and trainer.env_failed)


class Trainer:
    """One training run. Built with every check that bad input can fail (nothing written yet);
    `train` then makes the run dir, warm-starts or resumes, and runs the loop (`_loop`)."""

    def __init__(
        self, config: TrainConfig, envs: setup.Envs, device: torch.device, stop: StopSignals, resume: ResumePoint | None
    ) -> None:
        self.started = time.time()  # TrainResult.wall_time counts from here
        self.config, self.device, self.stop, self.resumed_from = config, device, stop, resume
        self.envs = setup.guard_envs(envs, config.env_id)
        self.env_failed = False
        self.agent = setup.make_agent(config, envs, device)
        setup.check_trainable(config, self.agent)
        self.optimizer = setup.make_optimizer(config, self.agent)
        self.finite_checks = FiniteChecks(self.agent, self.optimizer)
        self.minibatch_rng = torch.Generator().manual_seed(config.seed)
        self.minibatches = ShuffledMinibatches(self.minibatch_rng)
        # GRPO's prompts and PPO-ptx's corpus batches: one generator, saved in checkpoints, so a
        # resumed run draws the same prompts and batches.
        self.prompt_rng = np.random.default_rng(config.seed)
        self.ptx = setup.make_ptx(config, self.agent, self.prompt_rng)  # −γ_ptx·LL joins every minibatch loss
        ppo = config.ppo
        self.kl_penalty = (
            KLPenaltyCoefficient(ppo.kl_penalty_coef, ppo.kl_penalty_target) if ppo.loss == "kl_penalty" else None
        )
        self.reference = None  # π_ref (RLHF): made by the warm start, or restored
        # The state after the last completed update (None before the first): what a checkpoint
        # written between two updates holds.
        self.state: TrainState | None = None
        self.saved_update = -1  # the update the newest checkpoint on disk was written at
        self.last_checkpoint: Path | None = None
        if resume is not None:
            self._restore(resume)

    # ------------------------------------------------------------------------------- the run

    def train(self, config_name: str, progress: bool) -> TrainResult:
        config, resume = self.config, self.resumed_from
        self.run_dir = Path(config.run_dir) if resume else prepare_run_dir(config, config_name)
        start = self.state or TrainState()
        # A resumed curve continues from the checkpoint's point, which the crashed process logged.
        self.logger = TrainingLogger(
            self.run_dir, config.total_timesteps, config.stats_window, progress,
            start_step=start.global_step, purge_step=start.global_step + 1 if resume else None,
        )
        try:
            if resume:
                report_skipped_checkpoints(resume)
                self.logger.load_state_dict(start.episodes)
            else:
                self.logger.log_hyperparameters(config_to_dict(config))
                warm_started = setup.warm_start(config, self.agent, self.device, self.logger.writer)
                if setup.uses_reference(config, warm_started):
                    self.reference = setup.make_reference(config, self.agent, config.rlhf.kl_coef)
            self.recorder = EpisodeRecorder(self.logger, self.stop)
            self.recorder.texts.extend(start.texts)
            self.collector = setup.make_collector(
                config, self.agent, self.envs, self.device, self.recorder, self.reference, self.prompt_rng
            )
            self.callbacks = setup.make_callbacks(config, self.agent)
            # A resumed run cannot restore the episodes in progress: they restart, from a seed that
            # depends on (seed, update) only (agents/run/resume.py).
            self.collector.restart(env_reset_seed(config.seed, start.update))
            self.logger.start_time = time.time()  # steps/s counts training, not set-up or SFT
            self._loop(start.update, start.global_step)
            self.save_checkpoint(FINAL_CHECKPOINT)
        except StopRequested:
            saved = self._save_before_stopping()
            raise TrainingInterrupted(self.stop.signum, f"interrupted by {signal_name(self.stop.signum)}: {saved}") from None
        except EnvFailure as exc:
            self.env_failed = True
            raise TrainingFailed(f"{exc}; {self._save_before_stopping()}") from None
        except NonFiniteError as exc:
            # The weights may already hold the NaN: nothing of this update is saved.
            update = self.state.update + 1 if self.state else 1
            last = self.last_checkpoint or "none"
            raise TrainingFailed(f"non-finite {exc.what} at update {update}; last good checkpoint: {last}") from None
        finally:
            self.logger.close()
        logger = self.logger
        return TrainResult(
            self.run_dir, self.state.global_step, logger.mean_return, logger.episodes, time.time() - self.started,
            self.agent, train_time=time.time() - logger.start_time,
        )

    def _loop(self, update: int, global_step: int) -> None:
        config, ppo, agent = self.config, self.config.ppo, self.agent
        while global_step < config.total_timesteps:
            if self.stop.requested:
                raise StopRequested
            update += 1
            lr, clip_coef = annealed(ppo, global_step, config.total_timesteps)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

            agent.eval()
            rollout = self.collector.collect()
            global_step += len(rollout.batch)

            agent.train()
            metrics = ppo_update(
                agent, self.optimizer, rollout.batch, ppo, clip_coef,
                self.kl_penalty.value if self.kl_penalty else None, self.minibatches,
                ref_kl_coef=self.reference.loss_coef if self.reference else 0.0, extra_loss=self.ptx,
            )
            self.finite_checks.check_update(metrics)
            scalars = {**train_scalars(metrics, lr, clip_coef, self.ptx), **rollout.scalars}
            scalars.update(self._adapt_coefficients(metrics, rollout))
            self.logger.log_update(global_step, scalars)

            self.state = self._capture_state(update, global_step)
            for callback in self.callbacks:
                callback.on_update(self)

    def _adapt_coefficients(self, metrics: dict[str, float], rollout: Rollout) -> dict[str, float]:
        """Move the βs after an update; returns their scalars (each β as it was in this update).

        rlhf/kl is KL(π ‖ π_ref) per completion: mean per-token k1 × mean completion length."""
        scalars: dict[str, float] = {}
        if self.kl_penalty is not None:
            scalars["train/kl_coef"] = self.kl_penalty.value
            self.kl_penalty.update(metrics["approx_kl"])
        if isinstance(self.agent, TransformerActorCritic):
            lengths = self.logger.lengths
            length = float(np.mean(lengths)) if lengths else 0.0
            scalars["rlhf/response_length"] = length
            if rollout.token_kl is not None:
                kl = rollout.token_kl * length
                scalars["rlhf/kl"], scalars["rlhf/kl_coef"] = kl, self.reference.coef
                self.reference.adapt(kl, rollout.completions)
        return scalars

    # ------------------------------------------------------------------ state and checkpoints

    def _capture_state(self, update: int, global_step: int) -> TrainState:
        return TrainState(
            update=update,
            global_step=global_step,
            ref_kl_coef=self.reference.coef if self.reference else self.config.rlhf.kl_coef,
            kl_penalty_coef=self.kl_penalty.value if self.kl_penalty else None,
            rng=capture_rng(self.minibatch_rng, self.prompt_rng, self.device),
            episodes=self.logger.state_dict(),
            texts=list(self.recorder.texts),
        )

    def _restore(self, point: ResumePoint) -> None:
        """Load a checkpoint: networks, optimizer, TrainState (βs, generators). Refuses one that
        does not fit, before anything is written."""
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
        self.state, self.saved_update, self.last_checkpoint = state, point.update, point.checkpoint

    def save_checkpoint(self, name: str | None = None) -> Path:
        """Save the state after the last completed update as checkpoints/`name` (default
        update_<N>.pt, older ones pruned to keep_checkpoints)."""
        state = self.state
        name = name or update_checkpoint_name(state.update)
        path = self.run_dir / CHECKPOINT_DIR / name
        reference = self.reference.network.state_dict() if self.reference else None
        save_checkpoint(path, {
            "model": self.agent.state_dict(), "optimizer": self.optimizer.state_dict(), "reference": reference,
            "config": config_to_dict(self.config), **state.to_checkpoint(),
        })
        self.saved_update, self.last_checkpoint = state.update, path
        if name != FINAL_CHECKPOINT:
            prune_checkpoints(self.run_dir / CHECKPOINT_DIR, self.config.keep_checkpoints)
        return path

    def _save_before_stopping(self) -> str:
        """Checkpoint the last completed update unless it is on disk already; say where it is and
        how to go on."""
        if self.state is None:
            return "no update had finished: nothing saved"
        if self.saved_update != self.state.update:
            self.save_checkpoint()
        return (
            f"checkpoint {self.last_checkpoint} (update {self.state.update}, global step {self.state.global_step}); "
            f"continue with: python train.py --resume {self.run_dir}"
        )
