"""The on-policy training loop: collect → advantages → PPO update → log → checkpoint.

One loop for every kind of game. What differs by config:
- algo ppo: fixed-length segments from a vector env, GAE(γ, λ) with a critic;
- algo grpo: one completion per env per round, grouped by prompt, group-relative advantages;
- token envs may add an SFT warm start and a KL penalty to a frozen reference policy (RLHF).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import yaml

from agents.actor_critic import ActorCritic
from agents.build import build_agent, load_agent, resolve_device, resolve_precision  # noqa: F401 (re-export)
from agents.checkpoint import save_checkpoint
from agents.cnn import CNNActorCritic
from agents.config import ConfigError, TrainConfig, config_to_dict
from agents.evaluation import is_token_env, record_video_clip
from agents.grpo import collect_groups
from agents.logger import TrainingLogger
from agents.ppo import AdaptiveKLCoefficient, ppo_update
from agents.rlhf import AdaptiveKLController, frozen_copy, kl_penalised_rewards, reference_logp
from agents.rollout import collect_rollout, obs_to_tensor
from agents.rollout_storage import RolloutStorage
from agents.sft import sft_train
from agents.transformer import TransformerActorCritic
from agents.video import log_video
from envs.vector import finished_episodes, make_single_env, make_vector_env

CHECKPOINT_DIR = "checkpoints"
FINAL_CHECKPOINT = "final.pt"
SAMPLES_SHOWN = 4  # completions written to TensorBoard's text tab each sample_interval


@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    mean_return: float  # mean over the last `stats_window` episodes
    episodes: int
    wall_time: float
    agent: ActorCritic  # the trained network, as saved in the final checkpoint


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def default_run_dir(config: TrainConfig, config_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    env_name = config.env_id.replace("/", "-")
    return Path("runs") / f"{env_name}__{config_name}__{config.seed}__{stamp}"


def train(config: TrainConfig, config_name: str = "config", progress: bool = True) -> TrainResult:
    """Train `config`; writes config.yaml, TensorBoard events and checkpoints in run_dir."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    # Everything that can fail on bad input happens before anything is written to disk.
    envs = make_vector_env(config)
    if config.algo == "grpo":
        # GRPO plays exactly one completion per env per round, prompts shared within a group,
        # so it drives plain envs itself instead of an autoresetting vector env.
        envs.close()
        envs = [make_single_env(config.env_id, config.env) for _ in range(config.env.num_envs)]
    try:
        return _Trainer(config, envs, device).run(config_name, progress)
    finally:
        for env in envs if isinstance(envs, list) else [envs]:
            env.close()


def default_torch_threads(agent: ActorCritic) -> int:
    """One thread per core for CNNs (big convolutions split well); one thread for MLPs and the
    small transformer, whose matmuls are too small to split: with 2 threads on a busy 2-core
    machine their update ran 8× slower (oversubscription, see shared/notes/platform.md)."""
    return (os.cpu_count() or 1) if isinstance(agent, CNNActorCritic) else 1


class _Trainer:
    """State of one training run; `run` is the loop."""

    def __init__(self, config: TrainConfig, envs: gym.vector.VectorEnv | list[gym.Env], device: torch.device):
        self.config, self.envs, self.device = config, envs, device
        probe = envs[0] if isinstance(envs, list) else None
        obs_space = probe.observation_space if probe else envs.single_observation_space
        action_space = probe.action_space if probe else envs.single_action_space
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
        self.optimizer: torch.optim.Optimizer | None = None
        self.texts: list[str] = []

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
        """SFT stage (cross-entropy on task demonstrations), then freeze π_ref = the SFT policy."""
        rlhf = self.config.rlhf
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
        uses_reference = self.kl_coef > 0 or self.kl_controller is not None
        if uses_reference:
            self.reference = frozen_copy(self.agent)

    def _checkpoint(self, run_dir: Path, name: str, update: int, global_step: int) -> None:
        save_checkpoint(
            run_dir / CHECKPOINT_DIR / name,
            {
                "model": self.agent.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "reference": self.reference.state_dict() if self.reference is not None else None,
                "config": self.config_dict,
                "update": update,
                "global_step": global_step,
                "kl_coef": self.kl_coef,
                "penalty_kl_coef": self.penalty.value if self.penalty is not None else None,
            },
        )

    # ------------------------------------------------------------------------------- rollouts

    def _on_step_infos(self, logger: TrainingLogger):
        def record(infos: dict) -> None:
            logger.add_episodes(finished_episodes(infos))
            final = infos.get("final_info", {})
            if "text" in final:
                self.texts += [f"{final['prompt_text'][i]} → {final['text'][i]}" for i in np.flatnonzero(final["_text"])]

        return record

    def _ppo_batch(self, storage: RolloutStorage, obs: torch.Tensor, logger) -> tuple[dict, torch.Tensor, dict]:
        """One segment → GAE batch; with a reference policy, the per-token KL enters the reward
        (k1) or the batch (k3, for the loss)."""
        config, ppo = self.config, self.config.ppo
        obs = collect_rollout(
            self.agent, self.envs, storage, obs, self._on_step_infos(logger), config.env.bootstrap_truncated
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

    def _grpo_batch(self, rng: np.random.Generator, logger: TrainingLogger) -> tuple[dict, dict]:
        rollout = collect_groups(self.agent, self.envs, self.config.rlhf.group_size, rng, self.device)
        logger.add_episodes(list(zip(rollout.rewards.tolist(), rollout.lengths)))
        self.texts += rollout.texts
        batch = rollout.batch
        stats = {"zero_spread_groups": rollout.zero_spread_share}
        if self.reference is not None:
            batch["ref_logp"] = reference_logp(self.reference, batch["obs"], batch["actions"])
            stats["token_kl"] = float((batch["logp"] - batch["ref_logp"]).mean())
        return batch, stats

    # ----------------------------------------------------------------------------------- loop

    def run(self, config_name: str, progress: bool) -> TrainResult:
        config, ppo, agent = self.config, self.config.ppo, self.agent
        grpo = config.algo == "grpo"
        run_dir = self._prepare_run_dir(config_name)
        logger = TrainingLogger(run_dir, config.total_timesteps, config.stats_window, progress)
        logger.log_hyperparameters(self.config_dict)
        self._warm_start(logger)
        self.optimizer = torch.optim.Adam(agent.parameters(), lr=ppo.learning_rate, eps=ppo.adam_eps)
        minibatch_rng = torch.Generator().manual_seed(config.seed)
        prompt_rng = np.random.default_rng(config.seed)

        storage = obs = None
        if not grpo:
            storage = RolloutStorage(
                ppo.num_steps,
                config.env.num_envs,
                self.obs_space.shape,
                torch.from_numpy(np.zeros(0, dtype=self.obs_space.dtype)).dtype,
                self.device,
            )
            next_obs, _ = self.envs.reset(seed=config.seed)
            obs = obs_to_tensor(next_obs, self.device)

        start = logger.start_time = time.time()  # steps/s counts training, not set-up or SFT
        global_step = update = 0
        try:
            while global_step < config.total_timesteps:
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
                    batch, stats = self._grpo_batch(prompt_rng, logger)
                else:
                    batch, obs, stats = self._ppo_batch(storage, obs, logger)
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
                    minibatch_rng,
                    ref_kl_coef=ref_kl_coef,
                )
                log = {
                    "train/learning_rate": lr,
                    "train/clip_range": clip_coef,
                    "train/loss": metrics["loss"],
                    "train/policy_gradient_loss": metrics["policy_loss"],
                    "train/value_loss": metrics["value_loss"],
                    "train/entropy_loss": -metrics["entropy"],  # SB3 logs the negated entropy
                    "train/approx_kl": metrics["approx_kl"],
                    "train/clip_fraction": metrics["clip_fraction"],
                    "train/explained_variance": metrics["explained_variance"],
                    "train/epochs_run": metrics["epochs_run"],
                }
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
                if config.checkpoint_interval and update % config.checkpoint_interval == 0:
                    self._checkpoint(run_dir, f"update_{update:06d}.pt", update, global_step)
            self._checkpoint(run_dir, FINAL_CHECKPOINT, update, global_step)
        finally:
            logger.close()
        return TrainResult(run_dir, global_step, logger.mean_return, logger.episodes, time.time() - start, agent)

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
