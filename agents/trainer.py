"""The on-policy training loop: collect a segment → GAE → PPO update → log → checkpoint."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
import yaml

from agents.actor_critic import ActorCritic
from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.config import ConfigError, TrainConfig, config_from_dict, config_to_dict
from agents.logger import TrainingLogger
from agents.cnn import CNNActorCritic
from agents.mlp import MLPActorCritic
from agents.ppo import AdaptiveKLCoefficient, ppo_update
from agents.rollout_storage import RolloutStorage
from envs.vector import finished_episodes, make_single_env, make_vector_env

CHECKPOINT_DIR = "checkpoints"
FINAL_CHECKPOINT = "final.pt"


@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    mean_return: float  # mean over the last `stats_window` episodes
    episodes: int
    wall_time: float
    agent: ActorCritic  # the trained network, as saved in the final checkpoint


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: cuda was requested but torch sees no CUDA device (use auto or cpu)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_agent(config: TrainConfig, observation_space: gym.Space, num_actions: int) -> ActorCritic:
    """The actor-critic network named by `network.kind`."""
    net = config.network
    kind = net.kind
    if kind == "auto":
        kind = "nature_cnn" if len(observation_space.shape) == 3 else "mlp"
    if kind == "mlp":
        return MLPActorCritic(observation_space, num_actions, net.hidden_sizes, net.activation, net.shared_trunk)
    if len(observation_space.shape) != 3:
        raise ConfigError(f"network.kind {kind} needs image observations (C, H, W), got {observation_space.shape}")
    try:
        return CNNActorCritic(observation_space, num_actions, trunk=kind.removesuffix("_cnn"))
    except ValueError as exc:
        raise ConfigError(f"network.kind {kind}: {exc}") from None


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # AVX512-BF16 / AMX on this CPU


def resolve_precision(precision: str, agent: ActorCritic, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for the network, or None for plain float32.

    auto picks bf16 for convolutional networks where the hardware computes it natively (it
    doubles the learner's speed on these CPUs) and fp32 for small MLPs, which gain nothing.
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        if not bf16_supported(device):
            raise ConfigError(f"precision: bf16 was requested but this {device.type} has no native bf16")
        return torch.bfloat16
    return torch.bfloat16 if isinstance(agent, CNNActorCritic) and bf16_supported(device) else None


def default_run_dir(config: TrainConfig, config_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    env_name = config.env_id.replace("/", "-")
    return Path("runs") / f"{env_name}__{config_name}__{config.seed}__{stamp}"


def obs_to_tensor(obs: np.ndarray, device: torch.device) -> torch.Tensor:
    # One copy from the env's array straight to the device, in the env's own dtype.
    return torch.as_tensor(obs, device=device)


def load_agent(checkpoint_path: Path, device: str | torch.device = "cpu") -> tuple[ActorCritic, TrainConfig]:
    """Rebuild the agent of a checkpoint (architecture from its saved config) and load its weights."""
    state = load_checkpoint(checkpoint_path, map_location=device)
    try:
        config = config_from_dict(state["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{checkpoint_path} holds an invalid config: {exc}") from None
    env = make_single_env(config.env_id, config.env)
    agent = build_agent(config, env.observation_space, int(env.action_space.n))
    env.close()
    try:
        agent.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint_path} does not match the network of its config: {exc}") from None
    return agent.to(device), config


@torch.inference_mode()
def collect_rollout(
    agent: ActorCritic,
    envs: gym.vector.VectorEnv,
    storage: RolloutStorage,
    obs: torch.Tensor,
    on_episodes: Callable[[list[tuple[float, int]]], None],
) -> torch.Tensor:
    """Fill `storage` with one segment played by `agent`, starting from `obs`; return the
    observation after the segment. For an episode truncated at step t, V(its real final
    observation, from info["final_obs"]) is stored in final_values[t] for GAE's bootstrap."""
    device = storage.obs.device
    for step in range(storage.num_steps):
        storage.obs[step] = obs
        action, logp, value = agent.act(obs)
        storage.actions[step], storage.logp[step], storage.values[step] = action, logp, value
        next_obs, reward, terminated, truncated, infos = envs.step(action.cpu().numpy())
        storage.rewards[step] = torch.as_tensor(reward, device=device)
        storage.terminated[step] = torch.as_tensor(terminated, device=device)
        storage.truncated[step] = torch.as_tensor(truncated, device=device)
        storage.final_values[step] = 0.0
        bootstrap = np.flatnonzero(truncated & ~terminated)
        if bootstrap.size:
            final_obs = np.stack(infos["final_obs"][bootstrap])
            storage.final_values[step, bootstrap] = agent.value(obs_to_tensor(final_obs, device))
        on_episodes(finished_episodes(infos))
        obs = obs_to_tensor(next_obs, device)
    return obs


def train(config: TrainConfig, config_name: str = "config", progress: bool = True) -> TrainResult:
    """Train `config` with PPO; writes config.yaml, TensorBoard events and checkpoints in run_dir."""
    seed_everything(config.seed)
    torch.set_num_threads(config.torch_threads or os.cpu_count() or 1)
    device = resolve_device(config.device)
    # Everything that can fail on bad input happens before anything is written to disk.
    envs = make_vector_env(config)
    try:
        return _train(config, config_name, envs, device, progress)
    finally:
        envs.close()


def _train(
    config: TrainConfig, config_name: str, envs: gym.vector.VectorEnv, device: torch.device, progress: bool
) -> TrainResult:
    ppo = config.ppo
    obs_space = envs.single_observation_space
    agent = build_agent(config, obs_space, int(envs.single_action_space.n)).to(device)
    agent.autocast_dtype = resolve_precision(config.precision, agent, device)

    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config, config_name)
    config.run_dir = str(run_dir)
    (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    config_dict = config_to_dict(config)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config_dict, sort_keys=False))
    optimizer = torch.optim.Adam(agent.parameters(), lr=ppo.learning_rate, eps=ppo.adam_eps)
    storage = RolloutStorage(
        ppo.num_steps,
        config.env.num_envs,
        obs_space.shape,
        torch.from_numpy(np.zeros(0, dtype=obs_space.dtype)).dtype,
        device,
    )
    kl_coef = AdaptiveKLCoefficient(ppo.kl_coef, ppo.kl_target) if ppo.loss == "kl_penalty" else None
    minibatch_rng = torch.Generator().manual_seed(config.seed)
    logger = TrainingLogger(run_dir, config.total_timesteps, config.stats_window, progress)
    logger.log_hyperparameters(config_dict)

    def checkpoint(name: str, update: int, global_step: int) -> None:
        save_checkpoint(
            run_dir / CHECKPOINT_DIR / name,
            {
                "model": agent.state_dict(),
                "optimizer": optimizer.state_dict(),
                "config": config_dict,
                "update": update,
                "global_step": global_step,
                "kl_coef": kl_coef.value if kl_coef is not None else None,
            },
        )

    start = time.time()
    global_step = 0
    next_obs, _ = envs.reset(seed=config.seed)
    next_obs_t = obs_to_tensor(next_obs, device)
    try:
        for update in range(1, config.num_updates + 1):
            # Linear annealing: the fraction of training left, 1 → 1/num_updates.
            frac = 1.0 - (update - 1.0) / config.num_updates
            lr = ppo.learning_rate * frac if ppo.anneal_lr else ppo.learning_rate
            clip_coef = ppo.clip_coef * frac if ppo.anneal_clip else ppo.clip_coef
            for group in optimizer.param_groups:
                group["lr"] = lr

            agent.eval()
            next_obs_t = collect_rollout(agent, envs, storage, next_obs_t, logger.add_episodes)
            global_step += storage.num_steps * envs.num_envs
            with torch.inference_mode():
                storage.compute_advantages(agent.value(next_obs_t), ppo.gamma, ppo.gae_lambda)

            agent.train()
            metrics = ppo_update(
                agent,
                optimizer,
                storage.flatten(),
                ppo,
                clip_coef,
                kl_coef.value if kl_coef is not None else None,
                minibatch_rng,
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
            if kl_coef is not None:
                log["train/kl_coef"] = kl_coef.value
                kl_coef.update(metrics["approx_kl"])
            logger.log_update(global_step, log)
            if config.checkpoint_interval and update % config.checkpoint_interval == 0:
                checkpoint(f"update_{update:06d}.pt", update, global_step)
        checkpoint(FINAL_CHECKPOINT, config.num_updates, global_step)
    finally:
        logger.close()
    return TrainResult(run_dir, global_step, logger.mean_return, logger.episodes, time.time() - start, agent)
