"""The on-policy training loop: collect → advantages → PPO update → log → checkpoint.

One loop for every kind of game. What differs by config:
- algo ppo: fixed-length segments from a vector env, GAE(γ, λ) with a critic;
- algo grpo: one completion per env per round, grouped by prompt, group-relative advantages;
- token envs may add an SFT warm start and a KL penalty to a frozen reference policy (RLHF).

Reliability (see agents/resume.py and agents/faults.py): checkpoints hold everything the loop
needs to go on (networks, optimizer, schedule position, every random generator, KL coefficients,
the episode window); a run resumes from its newest good one. SIGINT/SIGTERM stop at the next safe
point with a checkpoint; a non-finite gradient, loss or weight stops the run before it is saved;
an env that raises or dies stops it after a checkpoint of the last completed update.
"""

from __future__ import annotations

import os
import random
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import yaml

from agents.actor_critic import ActorCritic
from agents.build import build_agent, resolve_device, resolve_precision
from agents.checkpoint import (
    FINAL_CHECKPOINT,
    CheckpointError,
    load_checkpoint,
    mismatch_error,
    prune_checkpoints,
    save_checkpoint,
    update_checkpoint_name,
)
from agents.cnn import CNNActorCritic
from agents.config import ConfigError, TrainConfig, config_to_dict
from agents.evaluation import is_token_env, record_video_clip
from agents.faults import (
    EnvFailure,
    FiniteChecks,
    GuardedEnv,
    NonFiniteError,
    StopSignals,
    TrainingFailed,
    TrainingInterrupted,
    close_envs,
    signal_name,
    stop_signals_ignored,
)
from agents.grpo import collect_groups
from agents.logger import TrainingLogger
from agents.ppo import AdaptiveKLCoefficient, ppo_update
from agents.ptx import ptx_term_from_corpus_file
from agents.resume import CHECKPOINT_DIR, ResumePoint, capture_rng, env_reset_seed, restore_rng
from agents.rlhf import AdaptiveKLController, frozen_copy, kl_penalised_rewards, reference_logp
from agents.rollout import collect_rollout, obs_to_tensor
from agents.rollout_storage import RolloutStorage
from agents.sft import sft_train
from agents.transformer import TransformerActorCritic
from agents.video import log_video
from envs.vector import finished_episodes, make_single_env, make_vector_env

SAMPLES_SHOWN = 4  # completions written to TensorBoard's text tab each sample_interval
# info keys a reward-model env sets on an episode's last step → the scalar of their mean per update:
# the gold judge's score (what the reward model stands in for) and whether the grammar accepts the text.
JUDGED_INFO = {"gold_score": "rlhf/gold_score", "grammatical": "rlhf/fluency"}


@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    mean_return: float  # mean over the last `stats_window` episodes
    episodes: int
    wall_time: float  # seconds from building the agent to the final checkpoint (SFT included)
    agent: ActorCritic  # the trained network, as saved in the final checkpoint
    train_time: float  # seconds of the training loop alone (what time/fps divides by)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_run_dir(config: TrainConfig, config_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    env_name = config.env_id.replace("/", "-")
    return Path("runs") / f"{env_name}__{config_name}__{config.seed}__{stamp}"


def train(
    config: TrainConfig, config_name: str = "config", progress: bool = True, resume: ResumePoint | None = None
) -> TrainResult:
    """Train `config`, or with `resume` continue that run from its checkpoint; writes config.yaml,
    TensorBoard events and checkpoints in run_dir.

    Raises ConfigError or CheckpointError on bad input (before anything is written),
    TrainingInterrupted after SIGINT/SIGTERM and TrainingFailed when the run cannot go on.
    """
    seed_everything(config.seed)
    device = resolve_device(config.device)
    with StopSignals() as stop:
        # Everything that can fail on bad input happens before anything is written to disk.
        with stop_signals_ignored():  # the trainer stops its env workers itself, after its checkpoint
            envs = make_vector_env(config)
        if config.algo == "grpo":
            # GRPO plays exactly one completion per env per round, prompts shared within a group,
            # so it drives plain envs itself instead of an autoresetting vector env.
            envs.close()
            envs = [make_single_env(config.env_id, config.env) for _ in range(config.env.num_envs)]
        trainer = None
        try:
            trainer = _Trainer(config, envs, device)
            if resume is not None:
                trainer.restore(resume)
            return trainer.run(config_name, progress, stop)
        finally:
            close_envs(envs, failed=trainer is not None and trainer.env_failed)


def default_torch_threads(agent: ActorCritic) -> int:
    """One thread per core for CNNs (big convolutions split well); one thread for MLPs and the
    small transformer, whose matmuls are too small to split: with 2 threads on a busy 2-core
    machine their update ran 8× slower (oversubscription, see shared/notes/platform.md)."""
    return (os.cpu_count() or 1) if isinstance(agent, CNNActorCritic) else 1


class _StopRequested(Exception):
    """Raised between two env steps once a stop signal has arrived."""


class _Trainer:
    """State of one training run; `run` is the loop."""

    def __init__(self, config: TrainConfig, envs: gym.vector.VectorEnv | list[gym.Env], device: torch.device):
        self.started = time.time()  # TrainResult.wall_time counts from here
        self.config, self.device = config, device
        probe = envs[0] if isinstance(envs, list) else None
        obs_space = probe.observation_space if probe else envs.single_observation_space
        action_space = probe.action_space if probe else envs.single_action_space
        # Every env call goes through a guard that names the env when it raises or its worker dies.
        if isinstance(envs, list):
            self.envs = [GuardedEnv(env, config.env_id, i) for i, env in enumerate(envs)]
        else:
            self.envs = GuardedEnv(envs, config.env_id)
        self.env_failed = False
        # Orthogonal init runs a QR factorisation whose last bits depend on the thread count: built
        # on one thread, a seed gives the same weights whatever an earlier run in the process set.
        torch.set_num_threads(1)
        self.agent = build_agent(config, obs_space, int(action_space.n)).to(device)
        torch.set_num_threads(config.torch_threads or default_torch_threads(self.agent))
        self.agent.autocast_dtype = resolve_precision(config.precision, self.agent, device)
        self.sequence_model = isinstance(self.agent, TransformerActorCritic)
        rlhf = config.rlhf
        if not self.sequence_model and (config.algo == "grpo" or rlhf.kl_coef > 0 or rlhf.sft_steps > 0):
            raise ConfigError("algo grpo, rlhf.kl_coef and rlhf.sft_steps need a token env and the transformer")
        if config.capture_video and is_token_env(config.env_id):
            raise ConfigError("capture_video: token envs play texts, not pictures (samples go to TensorBoard's text tab)")
        self.obs_space = obs_space
        self.kl_coef = rlhf.kl_coef
        self.kl_controller = (
            AdaptiveKLController(rlhf.kl_coef, rlhf.kl_target, rlhf.kl_horizon) if rlhf.adaptive_kl else None
        )
        ppo = config.ppo
        self.penalty = AdaptiveKLCoefficient(ppo.kl_coef, ppo.kl_target) if ppo.loss == "kl_penalty" else None
        self.reference: ActorCritic | None = None
        # Adam's moments start at the first step: creating it before the SFT stage changes nothing.
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=ppo.learning_rate, eps=ppo.adam_eps)
        self.finite_checks = FiniteChecks(self.agent, self.optimizer)
        self.minibatch_rng = torch.Generator().manual_seed(config.seed)
        # GRPO's prompts and PPO-ptx's corpus batches: one generator, saved in checkpoints
        # (agents/resume.py), so a resumed run draws the same prompts and batches.
        self.prompt_rng = np.random.default_rng(config.seed)
        # PPO-ptx: −γ_ptx·LL of a corpus batch joins every minibatch loss (agents/ptx.py).
        self.ptx = (
            ptx_term_from_corpus_file(
                self.agent, rlhf.ptx_corpus, rlhf.ptx_coef, rlhf.ptx_batch_size, self.prompt_rng
            )
            if rlhf.ptx_coef > 0 else None
        )
        # Per-episode judge values of finished episodes (reward-model envs), averaged per update.
        self.judged: dict[str, list[float]] = {key: [] for key in JUDGED_INFO}
        self.texts: list[str] = []
        # The state after the last completed update, minus the networks and the optimizer (which
        # only an update changes): what a checkpoint written between two updates holds.
        self.snapshot: dict | None = None
        self.saved_update = -1  # the update the newest checkpoint on disk was written at
        self.last_checkpoint: Path | None = None
        self.resumed_from: ResumePoint | None = None

    # ---------------------------------------------------------------------------------- setup

    def _prepare_run_dir(self, config_name: str) -> Path:
        config = self.config
        run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config, config_name)
        config.run_dir = str(run_dir)
        (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
        self.config_dict = config_to_dict(config)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(self.config_dict, sort_keys=False))
        return run_dir

    def _warm_start(self, logger: TrainingLogger) -> None:
        """SFT stage (cross-entropy on task demonstrations), then freeze π_ref = the SFT policy.

        π_ref is kept after any warm start, also with β = 0: the KL to it is then logged
        (rlhf/kl) without being penalised, which is what shows a policy drifting off unguarded."""
        rlhf = self.config.rlhf
        if rlhf.init_checkpoint:  # e.g. the RLHF pipeline's SFT stage
            self.agent.load_state_dict(load_checkpoint(Path(rlhf.init_checkpoint), self.device)["model"])
            self.agent.reset_cache()
        if rlhf.sft_steps > 0:
            env = make_single_env(self.config.env_id, self.config.env)
            task = env.unwrapped.task
            env.close()
            result = sft_train(
                self.agent, task, rlhf.sft_steps, rlhf.sft_batch_size, rlhf.sft_learning_rate,
                seed=self.config.seed, device=self.device,
            )
            for step, loss in enumerate(result["losses"]):
                logger.writer.add_scalar("sft/loss", loss, step)
        warm_started = bool(rlhf.init_checkpoint) or rlhf.sft_steps > 0
        uses_reference = self.kl_coef > 0 or self.kl_controller is not None or warm_started
        if uses_reference:
            self.reference = frozen_copy(self.agent)

    def restore(self, point: ResumePoint) -> None:
        """Load everything a checkpoint holds: networks, optimizer, coefficients, random generators,
        episode window. Refuses a checkpoint that does not fit, before anything is written."""
        state = point.state
        try:
            self.agent.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if state.get("reference") is not None:
                self.reference = frozen_copy(self.agent)
                self.reference.load_state_dict(state["reference"])
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise mismatch_error(point.checkpoint, exc) from None
        if state.get("kl_coef") is not None:
            self.kl_coef = float(state["kl_coef"])
            if self.kl_controller is not None:
                self.kl_controller.value = self.kl_coef
        if self.penalty is not None and state.get("penalty_kl_coef") is not None:
            self.penalty.value = float(state["penalty_kl_coef"])
        try:
            resume = state["resume"]
            self.texts = [str(text) for text in resume.get("texts", [])]
            self.logger_state = {
                "returns": [float(r) for r in resume["logger"]["returns"]],
                "lengths": [int(n) for n in resume["logger"]["lengths"]],
                "episodes": int(resume["logger"]["episodes"]),
            }
            # Nothing draws random numbers between here and the first rollout.
            restore_rng(resume["rng"], self.minibatch_rng, self.prompt_rng)
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            raise CheckpointError(f"{point.checkpoint} holds a malformed resume state: {exc!r}") from None
        self.snapshot = {key: state[key] for key in ("update", "global_step", "kl_coef", "penalty_kl_coef", "resume")}
        self.saved_update = point.update
        self.last_checkpoint = point.checkpoint
        self.resumed_from = point

    def _take_snapshot(self, update: int, global_step: int, logger: TrainingLogger) -> None:
        self.snapshot = {
            "update": update,
            "global_step": global_step,
            "kl_coef": self.kl_coef,
            "penalty_kl_coef": self.penalty.value if self.penalty is not None else None,
            "resume": {
                "rng": capture_rng(self.minibatch_rng, self.prompt_rng, self.device),
                "logger": logger.state_dict(),
                "texts": list(self.texts),
            },
        }

    def _checkpoint(self, run_dir: Path, name: str) -> Path:
        """Save the state after the last completed update as checkpoints/`name`."""
        path = run_dir / CHECKPOINT_DIR / name
        save_checkpoint(
            path,
            {
                "model": self.agent.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "reference": self.reference.state_dict() if self.reference is not None else None,
                "config": self.config_dict,
                **self.snapshot,
            },
        )
        self.saved_update, self.last_checkpoint = self.snapshot["update"], path
        if name != FINAL_CHECKPOINT:
            prune_checkpoints(run_dir / CHECKPOINT_DIR, self.config.keep_checkpoints)
        return path

    def _save_before_stopping(self, run_dir: Path) -> str:
        """Checkpoint the last completed update unless it is on disk already; say where it is
        and how to go on."""
        if self.snapshot is None:
            return "no update had finished: nothing saved"
        update = self.snapshot["update"]
        if self.saved_update != update:
            self._checkpoint(run_dir, update_checkpoint_name(update))
        return (
            f"checkpoint {self.last_checkpoint} (update {update}, global step {self.snapshot['global_step']}); "
            f"continue with: python train.py --resume {run_dir}"
        )

    def _start_resumed(self, run_dir: Path, logger: TrainingLogger) -> None:
        """What a resume does once every check has passed: report and set aside the checkpoints
        it skipped, drop writes cut short by the crash, restore the episode window."""
        point = self.resumed_from
        for skipped in point.skipped:
            aside = ""
            if skipped.corrupt:  # renamed, so that pruning and later resumes never count it again
                aside_path = skipped.path.with_name(skipped.path.name + ".corrupt")
                skipped.path.replace(aside_path)
                aside = f" (moved to {aside_path.name})"
            print(f"warning: {skipped.reason}; skipped{aside}", file=sys.stderr)
        if point.skipped:
            print(f"warning: resuming from the previous good checkpoint {point.checkpoint}", file=sys.stderr)
        for stale in (run_dir / CHECKPOINT_DIR).glob("*.pt.tmp"):
            stale.unlink(missing_ok=True)
        logger.load_state_dict(self.logger_state)

    # ------------------------------------------------------------------------------- rollouts

    def _on_step_infos(self, logger: TrainingLogger, stop: StopSignals):
        def record(infos: dict) -> None:
            logger.add_episodes(finished_episodes(infos))
            final = infos.get("final_info", {})
            for key, values in self.judged.items():
                if key in final:
                    values += [float(final[key][i]) for i in np.flatnonzero(final[f"_{key}"])]
            if "text" in final:
                self.texts += [f"{final['prompt_text'][i]} → {final['text'][i]}" for i in np.flatnonzero(final["_text"])]
            if stop.requested:  # a safe point: the networks have not changed since the last update
                raise _StopRequested

        return record

    def _ppo_batch(
        self, storage: RolloutStorage, obs: torch.Tensor, logger: TrainingLogger, stop: StopSignals
    ) -> tuple[dict, torch.Tensor, dict]:
        """One segment → GAE batch; with a reference policy, the per-token KL enters the reward
        (k1) or the batch (k3, for the loss)."""
        config, ppo = self.config, self.config.ppo
        obs = collect_rollout(
            self.agent, self.envs, storage, obs, self._on_step_infos(logger, stop), config.env.bootstrap_truncated
        )
        stats: dict[str, float] = {}
        ref_logp = None
        if self.reference is not None:
            ref_logp = reference_logp(self.reference, storage.obs.flatten(0, 1), storage.actions.flatten())
            ref_logp = ref_logp.view_as(storage.logp)
            stats["token_kl"] = float((storage.logp - ref_logp).mean())
            if config.rlhf.kl_estimator == "k1":
                storage.rewards = kl_penalised_rewards(storage.rewards, storage.logp, ref_logp, self.kl_coef)
        with torch.inference_mode():
            storage.compute_advantages(self.agent.value(obs), ppo.gamma, ppo.gae_lambda)
        batch = storage.flatten()
        if self.sequence_model:
            batch["episode"] = storage.episode_ids().flatten()
        if ref_logp is not None and config.rlhf.kl_estimator == "k3":
            batch["ref_logp"] = ref_logp.flatten()
        return batch, obs, stats

    def _grpo_batch(self, logger: TrainingLogger) -> tuple[dict, dict]:
        rollout = collect_groups(self.agent, self.envs, self.config.rlhf.group_size, self.prompt_rng, self.device)
        logger.add_episodes(list(zip(rollout.rewards.tolist(), rollout.lengths)))
        self.texts += rollout.texts
        batch = rollout.batch
        stats = {"zero_spread_groups": rollout.zero_spread_share}
        if self.reference is not None:
            batch["ref_logp"] = reference_logp(self.reference, batch["obs"], batch["actions"])
            stats["token_kl"] = float((batch["logp"] - batch["ref_logp"]).mean())
        return batch, stats

    # ----------------------------------------------------------------------------------- loop

    def run(self, config_name: str, progress: bool, stop: StopSignals) -> TrainResult:
        config, ppo, agent = self.config, self.config.ppo, self.agent
        grpo = config.algo == "grpo"
        resume = self.resumed_from
        update = resume.update if resume else 0
        global_step = resume.global_step if resume else 0
        if resume:
            run_dir = Path(config.run_dir)
            self.config_dict = config_to_dict(config)
        else:
            run_dir = self._prepare_run_dir(config_name)
        # A resumed curve continues from the checkpoint's point, which the crashed process logged.
        logger = TrainingLogger(
            run_dir, config.total_timesteps, config.stats_window, progress,
            start_step=global_step, purge_step=global_step + 1 if resume else None,
        )
        try:
            if resume:
                self._start_resumed(run_dir, logger)
            else:
                logger.log_hyperparameters(self.config_dict)
                self._warm_start(logger)

            storage = obs = None
            if not grpo:
                storage = RolloutStorage(
                    ppo.num_steps,
                    config.env.num_envs,
                    self.obs_space.shape,
                    torch.from_numpy(np.zeros(0, dtype=self.obs_space.dtype)).dtype,
                    self.device,
                )
                # A resumed run cannot restore the episodes in progress: they restart, from a
                # seed that depends on (seed, update) only (agents/resume.py).
                next_obs, _ = self.envs.reset(seed=env_reset_seed(config.seed, update))
                obs = obs_to_tensor(next_obs, self.device)

            logger.start_time = time.time()  # steps/s counts training, not set-up or SFT
            while global_step < config.total_timesteps:
                if stop.requested:
                    raise _StopRequested
                update += 1
                # Linear annealing over env steps: the fraction of training left, 1 → ~0.
                frac = 1.0 - global_step / config.total_timesteps
                lr = ppo.learning_rate * frac if ppo.anneal_lr else ppo.learning_rate
                clip_coef = ppo.clip_coef * frac if ppo.anneal_clip else ppo.clip_coef
                for group in self.optimizer.param_groups:
                    group["lr"] = lr

                agent.eval()
                episodes_before = logger.episodes
                if grpo:
                    batch, stats = self._grpo_batch(logger)
                else:
                    batch, obs, stats = self._ppo_batch(storage, obs, logger, stop)
                global_step += int(batch["actions"].shape[0])
                completions = logger.episodes - episodes_before

                agent.train()
                ref_kl_coef = self.kl_coef if (grpo or config.rlhf.kl_estimator == "k3") else 0.0
                metrics = ppo_update(
                    agent,
                    self.optimizer,
                    batch,
                    ppo,
                    clip_coef,
                    self.penalty.value if self.penalty is not None else None,
                    self.minibatch_rng,
                    ref_kl_coef=ref_kl_coef,
                    extra_loss=self.ptx,
                )
                self.finite_checks.check_update(metrics)
                log = {
                    "train/learning_rate": lr,
                    "train/clip_range": clip_coef,
                    "train/loss": metrics["loss"],
                    "train/policy_gradient_loss": metrics["policy_loss"],
                    "train/value_loss": metrics["value_loss"],
                    "train/entropy_loss": -metrics["entropy"],  # SB3 logs the negated entropy
                    "train/approx_kl": metrics["approx_kl_last_epoch"],  # SB3's definition
                    "train/clip_fraction": metrics["clip_fraction"],
                    "train/explained_variance": metrics["explained_variance"],
                    "train/epochs_run": metrics["epochs_run"],
                }
                if self.ptx is not None:
                    log["train/ptx_loss"] = metrics["extra_loss"]
                    log["train/ptx_log_likelihood"] = self.ptx.last_log_likelihood
                for key, values in self.judged.items():
                    if values:
                        log[JUDGED_INFO[key]] = float(np.mean(values))
                        values.clear()
                if self.penalty is not None:
                    log["train/kl_coef"] = self.penalty.value
                    self.penalty.update(metrics["approx_kl"])
                if self.sequence_model:
                    log.update(self._rlhf_scalars(stats, logger, completions))
                    if update % config.rlhf.sample_interval == 1 or config.rlhf.sample_interval == 1:
                        logger.writer.add_text("samples", "\n\n".join(self.texts[-SAMPLES_SHOWN:]), global_step)
                    self.texts = self.texts[-SAMPLES_SHOWN:]
                logger.log_update(global_step, log)
                if config.capture_video and update % config.video_interval == 0:
                    self._record_video(run_dir, logger, update, global_step)
                self._take_snapshot(update, global_step, logger)
                if config.checkpoint_interval and update % config.checkpoint_interval == 0:
                    self._checkpoint(run_dir, update_checkpoint_name(update))
            self._checkpoint(run_dir, FINAL_CHECKPOINT)
        except _StopRequested:
            saved = self._save_before_stopping(run_dir)
            raise TrainingInterrupted(stop.signum, f"interrupted by {signal_name(stop.signum)}: {saved}") from None
        except EnvFailure as exc:
            self.env_failed = True
            saved = self._save_before_stopping(run_dir)
            raise TrainingFailed(f"{exc}; {saved}") from None
        except NonFiniteError as exc:
            # The weights may already hold the NaN: nothing of this update is saved.
            last = self.last_checkpoint or "none"
            raise TrainingFailed(f"non-finite {exc.what} at update {update}; last good checkpoint: {last}") from None
        finally:
            logger.close()
        return TrainResult(
            run_dir, global_step, logger.mean_return, logger.episodes, time.time() - self.started, agent,
            train_time=time.time() - logger.start_time,
        )

    def _record_video(self, run_dir: Path, logger: TrainingLogger, update: int, global_step: int) -> None:
        """One evaluation game in its own env (training envs untouched), saved as an MP4 of the
        game's RGB screen and shown in TensorBoard; its wall time is left out of time/fps."""
        started = time.time()
        frames, fps = record_video_clip(
            self.agent, self.config, seed=self.config.seed + update,
            path=run_dir / "videos" / f"step_{global_step}.mp4",
        )
        log_video(logger.writer, "eval/video", frames, global_step, fps)
        logger.start_time += time.time() - started

    def _rlhf_scalars(self, stats: dict, logger: TrainingLogger, completions: int) -> dict[str, float]:
        """rlhf/kl is KL(π ‖ π_ref) per completion: mean per-token k1 × mean completion length."""
        length = float(np.mean(logger.lengths)) if logger.lengths else 0.0
        scalars = {"rlhf/response_length": length}
        if "zero_spread_groups" in stats:
            scalars["rlhf/zero_spread_groups"] = stats["zero_spread_groups"]
        if "token_kl" in stats:
            kl = stats["token_kl"] * length
            scalars["rlhf/kl"] = kl
            scalars["rlhf/kl_coef"] = self.kl_coef
            if self.kl_controller is not None and completions:
                self.kl_coef = self.kl_controller.update(kl, completions)
        return scalars
