"""The pieces a training run is built from, each made by one function: the agent (network,
threads, precision), the optimizer, the warm start and the reference policy, the PPO-ptx term,
the collector and the callbacks. bench/ builds its measurements from the same functions.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from agents.config import ConfigError, TrainConfig
from agents.core.adam import Adam
from agents.networks.actor_critic import ActorCritic
from agents.networks.build import build_agent, resolve_precision
from agents.networks.cnn import CNNActorCritic
from agents.networks.transformer import TransformerActorCritic
from agents.rlhf.ptx import PtxTerm
from agents.rlhf.reference import AdaptiveKLController, ReferencePolicy, frozen_copy
from agents.rlhf.sft import sft_train
from agents.run.callbacks import (
    Callback,
    CheckpointEvery,
    EvaluateEvery,
    StopAtReturn,
    TextSamplesEvery,
    VideoEvery,
)
from agents.run.checkpoint import CheckpointError, load_checkpoint
from agents.run.collectors import EpisodeRecorder, GroupCollector, SegmentCollector
from agents.run.faults import GuardedEnv
from envs.atari import is_atari
from envs.layout import source_observation_space
from envs.normalize import NormalizeVectorEnv
from envs.registry import is_token_env
from envs.sentiment_corpus import CorpusTask, SentimentCorpus
from envs.space_codec import space_to_dict
from envs.token_tasks import SentimentTask
from envs.vector import make_single_env, make_vector_env

Envs = gym.vector.VectorEnv | list[gym.Env]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_training_envs(config: TrainConfig) -> Envs:
    """A vector env for PPO; for GRPO, which plays exactly one completion per env per round with
    prompts shared within a group, plain envs that its collector drives itself."""
    envs = make_vector_env(config, gamma=config.ppo.gamma)
    if config.algo == "grpo":
        envs.close()
        return [make_single_env(config.env_id, config.env) for _ in range(config.env.num_envs)]
    return envs


def normalizer_of(envs: Envs) -> NormalizeVectorEnv | None:
    """The NormalizeVectorEnv around the training envs, if the config normalises."""
    return envs if isinstance(envs, NormalizeVectorEnv) else None


def guard_envs(envs: Envs, env_id: str) -> Envs:
    """Every env call through a guard that names the env when it raises or its worker dies."""
    if isinstance(envs, list):
        return [GuardedEnv(env, env_id, i) for i, env in enumerate(envs)]
    return GuardedEnv(envs, env_id)


def spaces_of(envs: Envs) -> tuple[gym.Space, gym.Space]:
    """(observation space, action space) of one env."""
    if isinstance(envs, list):
        return envs[0].observation_space, envs[0].action_space
    return envs.single_observation_space, envs.single_action_space


def model_spaces(config: TrainConfig, envs: Envs) -> dict[str, dict | None]:
    """The spaces a checkpoint stores (envs/space_codec.py), so that a saved model predicts
    without its env: what the network reads ("observation"), its actions ("action"), and what the
    game observes beneath the toolkit's layout ("source_observation", where it differs: images
    channels last, Dict / Tuple observations; None for Atari and rendered pixels, whose frames
    only the toolkit's pipeline makes)."""
    observation_space, action_space = spaces_of(envs)
    source = None
    if not (is_atari(config.env_id) or config.env.pixels or config.env.vector_backend == "envpool"):
        probe = envs[0] if isinstance(envs, list) else make_single_env(config.env_id, config.env)
        raw = source_observation_space(probe)
        if raw is not probe.observation_space:
            source = space_to_dict(raw)
        if not isinstance(envs, list):
            probe.close()
    return {
        "observation": space_to_dict(observation_space),
        "action": space_to_dict(action_space),
        "source_observation": source,
    }


def default_torch_threads(agent: ActorCritic) -> int:
    """One thread per core for CNNs (big convolutions split well); one thread for MLPs and the
    small transformer, whose matmuls are too small to split: with 2 threads on a busy 2-core
    machine their update ran 8× slower (oversubscription, see shared/notes/platform.md)."""
    return (os.cpu_count() or 1) if isinstance(agent, CNNActorCritic) else 1


def make_agent(config: TrainConfig, envs: Envs, device: torch.device) -> ActorCritic:
    """The config's network for these envs on `device`, with torch's thread count and the
    autocast precision set for it."""
    observation_space, action_space = spaces_of(envs)
    # Orthogonal init runs a QR factorisation whose last bits depend on the thread count: built
    # on one thread, a seed gives the same weights whatever an earlier run in the process set.
    torch.set_num_threads(1)
    agent = build_agent(config, observation_space, action_space).to(device)
    torch.set_num_threads(config.torch_threads or default_torch_threads(agent))
    agent.autocast_dtype = resolve_precision(config.precision, agent, device)
    return agent


def check_trainable(config: TrainConfig, agent: ActorCritic) -> None:
    """Refuse settings the built network cannot serve (before anything is written)."""
    rlhf = config.rlhf
    # rlhf.init_checkpoint loads the weights of an RLHF stage (a transformer) before RL: on any
    # other network it would fail in the warm start, after the run dir was written.
    needs_transformer = {
        "algo grpo": config.algo == "grpo",
        "rlhf.kl_coef > 0": rlhf.kl_coef > 0,
        "rlhf.sft_steps > 0": rlhf.sft_steps > 0,
        "rlhf.init_checkpoint": bool(rlhf.init_checkpoint),
    }
    used = [setting for setting, on in needs_transformer.items() if on]
    if used and not isinstance(agent, TransformerActorCritic):
        verb = "needs" if len(used) == 1 else "need"
        raise ConfigError(
            f"{', '.join(used)}: {verb} a token env and the transformer network, "
            f"but {config.env_id} gets {type(agent).__name__}"
        )
    if rlhf.init_checkpoint:
        # Read here as well as by the warm start, which runs after the run dir is written: a
        # missing, damaged or foreign file must be refused before. Keys and shapes are what
        # load_state_dict checks.
        path = Path(rlhf.init_checkpoint)
        if not path.is_file():
            raise ConfigError(f"rlhf.init_checkpoint: no such checkpoint file: {path}")
        try:
            weights = load_checkpoint(path)["model"]
        except CheckpointError as exc:
            raise ConfigError(f"rlhf.init_checkpoint: {exc}") from None
        own = agent.state_dict()
        items = weights.items() if isinstance(weights, dict) else ()
        shapes = {key: tuple(getattr(value, "shape", ())) for key, value in items}
        wrong = sorted(set(shapes) ^ set(own)) or [k for k in own if shapes[k] != tuple(own[k].shape)]
        if wrong:
            raise ConfigError(
                f"rlhf.init_checkpoint {path} holds weights of another network than this config's "
                f"(first difference: {wrong[0]})"
            )
    if config.capture_video and is_token_env(config.env_id):
        raise ConfigError(
            "capture_video: token envs play texts, not pictures (samples go to TensorBoard's text tab)"
        )


def action_mask_size(config: TrainConfig, envs: Envs) -> int | None:
    """n when the run masks invalid actions, else None. env.action_masks auto: when a reset of the
    env reports info["action_mask"] (gymnasium's convention); on: it must. Masks need Discrete(n)."""
    mode = config.env.action_masks
    if mode is False or config.algo == "grpo":
        return None
    reported = False
    if not is_atari(config.env_id) and config.env.vector_backend != "envpool":  # ALE reports none
        probe = make_single_env(config.env_id, config.env)
        reported = "action_mask" in probe.reset(seed=config.seed)[1]
        probe.close()
    if not reported:
        if mode is True:
            raise ConfigError(
                f"env.action_masks: on, but {config.env_id} reports no info['action_mask'] on reset"
            )
        return None
    action_space = spaces_of(envs)[1]
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ConfigError(
            f"env.action_masks: masks need a Discrete action space, {config.env_id} has {action_space}"
        )
    return int(action_space.n)


def make_optimizer(config: TrainConfig, agent: ActorCritic) -> Adam:
    # Adam's moments start at the first step: creating it before the SFT stage changes nothing.
    # Fused (agents/core/adam.py): one kernel per step for all parameters instead of about ten small
    # ops per tensor (CartPole's learner spends a fifth of its time in the per-tensor loop
    # otherwise); the same update to float rounding, on CPU and CUDA alike.
    ppo = config.ppo
    return Adam(agent.parameters(), lr=ppo.learning_rate, eps=ppo.adam_eps)


def make_ptx(config: TrainConfig, agent: ActorCritic, rng: np.random.Generator) -> PtxTerm | None:
    """PPO-ptx's term over the train split of rlhf.ptx_corpus (a corpus.json of the RLHF pipeline's
    corpus stage), drawing its batches from `rng`; None when rlhf.ptx_coef is 0."""
    rlhf = config.rlhf
    if rlhf.ptx_coef == 0:
        return None
    corpus = SentimentCorpus.from_dict(json.loads(Path(rlhf.ptx_corpus).read_text()))
    return PtxTerm(agent, CorpusTask(SentimentTask(), corpus.train), rlhf.ptx_coef, rlhf.ptx_batch_size, rng)


def warm_start(config: TrainConfig, agent: ActorCritic, device: torch.device, writer: SummaryWriter) -> bool:
    """Before RL: load rlhf.init_checkpoint's weights (e.g. the RLHF pipeline's SFT stage) and/or
    run rlhf.sft_steps of SFT (cross-entropy on the task's demonstrations, sft/loss logged).
    Returns whether the agent was warm-started."""
    rlhf = config.rlhf
    if rlhf.init_checkpoint:
        agent.load_state_dict(load_checkpoint(Path(rlhf.init_checkpoint), device)["model"])
        agent.reset_cache()
    if rlhf.sft_steps > 0:
        env = make_single_env(config.env_id, config.env)
        task = env.unwrapped.task
        env.close()
        result = sft_train(
            agent,
            task,
            rlhf.sft_steps,
            rlhf.sft_batch_size,
            rlhf.sft_learning_rate,
            seed=config.seed,
            device=device,
        )
        for step, loss in enumerate(result["losses"]):
            writer.add_scalar("sft/loss", loss, step)
    return bool(rlhf.init_checkpoint) or rlhf.sft_steps > 0


def uses_reference(config: TrainConfig, warm_started: bool) -> bool:
    """π_ref is kept after any warm start, also with β = 0: the KL to it is then logged (rlhf/kl)
    without being penalised, which is what shows a policy drifting off unguarded."""
    return config.rlhf.kl_coef > 0 or config.rlhf.adaptive_kl or warm_started


def make_reference(config: TrainConfig, network: ActorCritic, coef: float) -> ReferencePolicy:
    """π_ref = a frozen copy of `network`; GRPO always puts its KL into the loss (k3)."""
    rlhf = config.rlhf
    controller = (
        AdaptiveKLController(rlhf.kl_coef, rlhf.kl_target, rlhf.kl_horizon) if rlhf.adaptive_kl else None
    )
    estimator = "k3" if config.algo == "grpo" else rlhf.kl_estimator
    return ReferencePolicy(frozen_copy(network), coef, estimator, controller)


def make_collector(
    config: TrainConfig,
    agent: ActorCritic,
    envs: Envs,
    device: torch.device,
    recorder: EpisodeRecorder | None,
    reference: ReferencePolicy | None,
    prompt_rng: np.random.Generator,
    mask_size: int | None = None,
) -> SegmentCollector | GroupCollector:
    if config.algo == "grpo":
        return GroupCollector(agent, envs, config, device, recorder, reference, prompt_rng)
    with_episodes = isinstance(agent, TransformerActorCritic)  # minibatches of whole sequences
    return SegmentCollector(agent, envs, config, device, recorder, reference, with_episodes, mask_size)


def make_callbacks(config: TrainConfig, agent: ActorCritic) -> list[Callback]:
    callbacks: list[Callback] = []
    if isinstance(agent, TransformerActorCritic):
        callbacks.append(TextSamplesEvery(config.rlhf.sample_interval))
    if config.capture_video:
        callbacks.append(VideoEvery(config.video_interval))
    if config.checkpoint_interval:
        callbacks.append(CheckpointEvery(config.checkpoint_interval))
    if config.eval_interval:
        callbacks.append(EvaluateEvery(config.eval_interval, config.eval_episodes, config.eval_deterministic))
    if config.stop_at_return is not None:
        callbacks.append(StopAtReturn(config.stop_at_return))
    return callbacks
