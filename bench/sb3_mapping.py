"""One of our TrainConfigs as a Stable-Baselines3 PPO run: env, policy and hyperparameters.

The single place where our config is translated for SB3 (bench.compare and bench.sps both use
it). SB3 is run the way its users run it: Atari through make_atari_env (AtariWrapper) and
VecFrameStack with CnnPolicy; vector observations with MlpPolicy; token envs with MlpPolicy on our
env unchanged. Configs whose meaning SB3 cannot reproduce are refused with a MappingError; smaller
differences are listed by `differences` (bench/README.md explains each).
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np

from agents.config import ConfigError, TrainConfig
from agents.networks.cnn import SMALL_CNN_HIDDEN


class MappingError(ConfigError):
    """A config that SB3's PPO cannot run with the same meaning; reported as one `error:` line."""


@dataclass
class ShiftedLinearSchedule:
    """SB3 schedule (a function of progress_remaining p) equal to our linear annealing.

    We anneal with frac = 1 − (steps before this update) / total; SB3 evaluates its schedules
    after the rollout, at p = 1 − (steps including this update's batch) / total, so p = frac −
    batch / total. Returning value·(p + batch/total) gives the very same value at every update
    (a plain `value·p` would run one batch ahead of ours).
    """

    value: float
    batch_fraction: float  # num_envs × num_steps / total_timesteps

    def __call__(self, progress_remaining: float) -> float:
        return self.value * (progress_remaining + self.batch_fraction)


@dataclass
class SB3Plan:
    """What SB3 is given for one config (constructor arguments without the env and the seed)."""

    env_kind: str  # "atari" (make_atari_env + VecFrameStack), "pixels" (our pixel env), "plain"
    vec_env: str  # "dummy" or "subproc", as our "sync" / "async" vectorization
    policy: str  # "MlpPolicy", "CnnPolicy" or "MultiInputPolicy"
    ppo_kwargs: dict[str, Any]  # PPO(...) keyword arguments; schedules are ShiftedLinearSchedule
    policy_kwargs: dict[str, Any]  # activation_fn given by name ("tanh" / "relu")
    torch_threads: int  # the same rule as our trainer: cores for CNNs, 1 for small nets
    masked: bool = False  # sb3-contrib's MaskablePPO on info["action_mask"], as our env.action_masks
    normalize: dict[str, Any] | None = None  # VecNormalize(...) arguments, as our env.normalize_*


def _masked(config: TrainConfig) -> bool:
    """Whether our run masks actions (env.action_masks; auto: a reset reports info["action_mask"])."""
    mode = config.env.action_masks
    if isinstance(mode, bool):
        return mode
    from envs.vector import make_single_env

    env = make_single_env(config.env_id, config.env)
    try:
        return "action_mask" in env.reset(seed=config.seed)[1]
    finally:
        env.close()


def network_kind(config: TrainConfig, observation_space: gym.Space, actions: gym.Space | int) -> str:
    """The network our build_agent picks for this config (resolves network.kind auto)."""
    from agents.networks.build import is_token_space
    from agents.networks.cnn import NATURE_MIN_SIDE
    from envs.structured import StructuredBox

    if isinstance(observation_space, StructuredBox):
        return "multi_input"
    if config.network.kind != "auto":
        return config.network.kind
    if is_token_space(observation_space, actions):
        return "transformer"
    if len(observation_space.shape) == 3:
        return "nature_cnn" if min(observation_space.shape[1:]) >= NATURE_MIN_SIDE else "small_cnn"
    return "mlp"


def probe_spaces(config: TrainConfig) -> tuple[gym.Space, gym.Space]:
    """Observation and action space of one of our training envs (bad ids/kwargs → ConfigError)."""
    from envs.registry import check_env_id
    from envs.vector import make_single_env

    check_env_id(config.env_id, config.env.imports)
    try:
        env = make_single_env(config.env_id, config.env)
    except Exception as exc:  # a third-party constructor failing is the config's fault here
        raise ConfigError(
            f"cannot create env '{config.env_id}' with env.kwargs={config.env.kwargs}: {exc}"
        ) from None
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


def sb3_plan(config: TrainConfig, observation_space: gym.Space, actions: gym.Space | int) -> SB3Plan:
    """Map `config` onto SB3's PPO; MappingError where the meaning cannot be kept."""
    from envs.atari import is_atari
    from envs.vector import is_pixel_game, resolved_vectorization

    ppo, env_cfg, net = config.ppo, config.env, config.network
    if config.algo != "ppo":
        raise MappingError(f"algo {config.algo}: SB3 has no GRPO (group-relative advantages, no critic)")
    if ppo.loss != "clip":
        raise MappingError(f"ppo.loss {ppo.loss}: SB3's PPO has only the clipped surrogate")
    kind = network_kind(config, observation_space, actions)
    atari = is_atari(config.env_id)
    if net.squash != "none":
        raise MappingError("network.squash: SB3's PPO squashes actions only with gSDE")
    if atari:
        if not env_cfg.grayscale:
            raise MappingError("env.grayscale false: SB3's AtariWrapper always converts frames to gray")
        if not env_cfg.atari.fire_reset:
            raise MappingError("env.atari.fire_reset false: SB3's AtariWrapper always presses FIRE on reset")
    if kind in ("mlp", "transformer"):
        if kind == "mlp" and net.shared_trunk:
            raise MappingError("network.shared_trunk true: SB3 ≥ 1.8 has no shared MLP layers for pi and vf")
        policy = "MlpPolicy"
        # Separate pi and vf networks of our widths (the transformer's token observations are
        # one-hot encoded by SB3's MlpPolicy; hidden_sizes / activation default to SB3's own).
        policy_kwargs: dict[str, Any] = {
            "net_arch": {"pi": list(net.hidden_sizes), "vf": list(net.hidden_sizes)},
            "activation_fn": net.activation,
        }
    elif kind == "nature_cnn":
        policy = "CnnPolicy"  # NatureCNN (512 features) shared by the pi and vf heads, as ours
        policy_kwargs = {}
    elif kind == "small_cnn":
        # SB3's CnnPolicy cannot take grids under 36 px (its NatureCNN): ours is given to it as a
        # features extractor, 128 features shared by the pi and vf heads (net_arch []), as ours.
        policy = "CnnPolicy"
        policy_kwargs = {
            "features_extractor_class": "bench.sb3_extractors:SmallCNN",
            "features_extractor_kwargs": {"features_dim": SMALL_CNN_HIDDEN},
            "net_arch": [],
        }
    elif kind == "multi_input":
        # CombinedExtractor (NatureCNN of 256 features per image, the rest flattened) then
        # separate pi and vf MLPs: what agents/networks/multi_input.py builds.
        policy = "MultiInputPolicy"
        policy_kwargs = {
            "net_arch": {"pi": list(net.hidden_sizes), "vf": list(net.hidden_sizes)},
            "activation_fn": net.activation,
            "features_extractor_class": "bench.sb3_extractors:SizedCombinedExtractor",
        }
    else:
        raise MappingError(f"network.kind {kind}: SB3 has no built-in {kind} policy")
    policy_kwargs["ortho_init"] = True  # gains √2 hidden, 0.01 policy head, 1 value head, as ours
    policy_kwargs["optimizer_kwargs"] = {"eps": ppo.adam_eps}

    batch = config.batch_size
    # SB3 cuts the batch into minibatches of batch_size samples, the last one possibly shorter;
    # rounding up keeps at most num_minibatches steps per epoch (equal when it divides).
    minibatch = math.ceil(batch / ppo.num_minibatches)
    if ppo.norm_adv and minibatch < 2:
        raise MappingError("SB3 refuses minibatches of 1 sample with advantage normalisation")
    fraction = batch / config.total_timesteps
    learning_rate: Any = ppo.learning_rate
    if ppo.anneal_lr:
        learning_rate = ShiftedLinearSchedule(ppo.learning_rate, fraction)
    clip_range: Any = ShiftedLinearSchedule(ppo.clip_coef, fraction) if ppo.anneal_clip else ppo.clip_coef
    ppo_kwargs = {
        "learning_rate": learning_rate,
        "n_steps": ppo.num_steps,
        "batch_size": minibatch,
        "n_epochs": ppo.update_epochs,
        "gamma": ppo.gamma,
        "gae_lambda": ppo.gae_lambda,
        "clip_range": clip_range,
        # Ours clips the value with the same (possibly annealed) clip_coef as the policy.
        "clip_range_vf": clip_range if ppo.clip_value_loss else None,
        "normalize_advantage": ppo.norm_adv,
        "ent_coef": ppo.ent_coef,
        "vf_coef": ppo.vf_coef,  # both use mean((V − R)²) without ½
        "max_grad_norm": ppo.max_grad_norm,
        # SB3 stops once approx KL > 1.5 × target_kl; ours once it is > target_kl.
        "target_kl": ppo.target_kl / 1.5 if ppo.target_kl is not None else None,
        "stats_window_size": config.stats_window,
        "device": config.device,
        "verbose": 0,
    }
    vectorization = resolved_vectorization(config.env_id, env_cfg)
    subproc = vectorization in ("async", "overlap")
    if env_cfg.num_workers:  # SB3 has no vector env of several envs per process: the better of its two
        subproc = is_pixel_game(config.env_id, env_cfg)
    threads = config.torch_threads or ((os.cpu_count() or 1) if policy == "CnnPolicy" else 1)
    masked = _masked(config)
    normalize = None
    if env_cfg.normalize_obs or env_cfg.normalize_reward:
        normalize = {
            "norm_obs": env_cfg.normalize_obs,
            "norm_reward": env_cfg.normalize_reward,
            "gamma": ppo.gamma,
        }
    if masked and not isinstance(actions, gym.spaces.Discrete):
        raise MappingError("action masks: MaskablePPO is compared on Discrete actions only")
    return SB3Plan(
        env_kind="atari" if atari else ("pixels" if env_cfg.pixels else "plain"),
        vec_env="subproc" if subproc else "dummy",
        policy=policy,
        ppo_kwargs=ppo_kwargs,
        policy_kwargs=policy_kwargs,
        torch_threads=threads,
        masked=masked,
        normalize=normalize,
    )


def differences(config: TrainConfig, observation_space: gym.Space, actions: gym.Space | int) -> list[str]:
    """The differences between our run and SB3's that remain for this config (one line each)."""
    from agents.networks.build import bf16_supported, resolve_device

    ppo = config.ppo
    kind = network_kind(config, observation_space, actions)
    notes = [
        "Random streams differ (minibatch shuffling: torch generator vs NumPy; action sampling order), "
        "so equal seeds give equal env seeds but not equal trajectories.",
    ]
    if ppo.clip_value_loss:
        notes.append(
            "Value clipping: ours uses max((V−R)², (V_clip−R)²) (PPO2/CleanRL); SB3's clip_range_vf uses "
            "(V_clip−R)² alone."
        )
    if ppo.target_kl is not None:
        notes.append(
            "target_kl: SB3 gets target_kl/1.5 so both stop at the same KL, but SB3 drops the minibatch "
            "that crossed it while ours has already taken that gradient step."
        )
    if config.batch_size % ppo.num_minibatches:
        notes.append(
            f"Minibatches: the batch ({config.batch_size}) does not divide by {ppo.num_minibatches}; ours "
            "splits it into near-equal parts, SB3 into full minibatches plus a shorter last one."
        )
    if kind == "nature_cnn":
        auto_bf16 = config.precision == "auto" and bf16_supported(resolve_device(config.device))
        if config.precision == "bf16" or auto_bf16:
            notes.append(
                "Precision: ours runs the CNN under bf16 autocast, SB3 in fp32 "
                "(--set precision=fp32 to match)."
            )
    if kind == "transformer":
        notes.append(
            "Network: ours is a transformer over the token sequence; SB3's MlpPolicy sees one-hot tokens "
            f"through separate MLPs {list(config.network.hidden_sizes)} — not the same model class."
        )
    rlhf = config.rlhf
    if rlhf.sft_steps > 0:
        notes.append(
            f"SFT warm start ({rlhf.sft_steps} steps) before RL: ours only; its time counts in our wall time."
        )
    if rlhf.kl_coef > 0 or rlhf.adaptive_kl:
        notes.append("KL penalty to a reference policy (RLHF): ours only; SB3 trains on the env reward.")
    if not config.env.bootstrap_truncated:
        notes.append(
            "bootstrap_truncated false: SB3's env gets a wrapper turning truncations into terminations."
        )
    if config.env.num_workers:
        notes.append(
            f"env.num_workers {config.env.num_workers}: ours steps its envs in that many processes, "
            "several envs each; SB3 has no such vector env and gets SubprocVecEnv for pixel games, "
            "DummyVecEnv otherwise."
        )
    return notes


# ------------------------------------------------------------------------------------ building


class TruncationAsTermination(gym.Wrapper):
    """An episode cut at its length cap ends for good (terminated): our bootstrap_truncated=False."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or truncated, False, info


class MaskFromInfo(gym.Wrapper):
    """MaskablePPO asks the env for `action_masks()`; ours reads info["action_mask"] (or a Dict
    entry of that name, which leaves the observation as envs/structured.py takes it out)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        space = env.observation_space
        self.in_obs = isinstance(space, gym.spaces.Dict) and "action_mask" in space.spaces
        if self.in_obs:
            entries = {k: v for k, v in space.spaces.items() if k != "action_mask"}
            self.observation_space = gym.spaces.Dict(entries)
        self.mask = np.ones(env.action_space.n, dtype=bool)

    def _split(self, obs: Any, info: dict) -> Any:
        if self.in_obs:
            self.mask = np.asarray(obs["action_mask"], dtype=bool)
            return {k: v for k, v in obs.items() if k != "action_mask"}
        self.mask = np.asarray(info["action_mask"], dtype=bool)
        return obs

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return self._split(obs, info), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._split(obs, info), reward, terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        return self.mask


def _registered_env(env_id: str, imports: tuple[str, ...] = (), wrappers: tuple = (), masked: bool = False,
                    **kwargs: Any) -> gym.Env:
    """gym.make of our id with our env.imports and env.wrappers (also in SB3's env workers)."""
    from envs.images import channels_first_uint8, is_image_space
    from envs.registry import import_env_modules, wrapper_specs

    import_env_modules(list(imports))
    env = gym.make(env_id, **kwargs)
    if env.observation_space.dtype == np.bool_ and is_image_space(env.observation_space):
        # SB3 takes no boolean images (MinAtar's planes): they become the 0/255 uint8 planes,
        # channels first, that our env wrapper gives our network.
        env = channels_first_uint8(env)
    for wrapper, wrapper_kwargs in wrapper_specs(list(wrappers)):
        env = wrapper(env, **wrapper_kwargs)
    return MaskFromInfo(env) if masked else env


def _pixel_env(env_id: str, screen_size: int, grayscale: bool, frame_stack: int) -> gym.Env:
    from envs.pixels import make_pixel_env

    return make_pixel_env(env_id, screen_size=screen_size, grayscale=grayscale, frame_stack=frame_stack)


def _atari_then_truncation(env: gym.Env, **atari_kwargs: Any) -> gym.Env:
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    return TruncationAsTermination(AtariWrapper(env, **atari_kwargs))


def make_sb3_env(config: TrainConfig, plan: SB3Plan, seed: int):
    """The VecEnv SB3 trains on (Monitor beneath the preprocessing: raw full-game returns)."""
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecFrameStack, VecNormalize

    env_cfg = config.env
    vec_env_cls = SubprocVecEnv if plan.vec_env == "subproc" else DummyVecEnv
    common = dict(n_envs=env_cfg.num_envs, seed=seed, vec_env_cls=vec_env_cls)
    if plan.env_kind == "atari":
        atari = env_cfg.atari
        wrapper_kwargs = dict(
            noop_max=atari.noop_max,
            frame_skip=atari.frame_skip,
            screen_size=env_cfg.screen_size,
            terminal_on_life_loss=atari.terminal_on_life_loss,
            clip_reward=atari.clip_reward,
        )
        env_fn = partial(_registered_env, config.env_id)
        if env_cfg.bootstrap_truncated:
            envs = make_atari_env(env_fn, wrapper_kwargs=wrapper_kwargs, env_kwargs=env_cfg.kwargs, **common)
        else:  # make_atari_env is make_vec_env(wrapper_class=AtariWrapper); one wrapper more here
            envs = make_vec_env(
                env_fn, wrapper_class=_atari_then_truncation, wrapper_kwargs=wrapper_kwargs,
                env_kwargs=env_cfg.kwargs, **common,
            )
        return VecFrameStack(envs, n_stack=env_cfg.frame_stack)
    wrapper = None if env_cfg.bootstrap_truncated else TruncationAsTermination
    if plan.env_kind == "pixels":
        # SB3 has no generic render-to-pixels stack: our env (channels-first uint8 frames) unchanged.
        env_fn = partial(
            _pixel_env, config.env_id, env_cfg.screen_size, env_cfg.grayscale, env_cfg.frame_stack
        )
        return make_vec_env(env_fn, wrapper_class=wrapper, **common)
    env_fn = partial(
        _registered_env, config.env_id, tuple(env_cfg.imports), tuple(env_cfg.wrappers), plan.masked
    )
    envs = make_vec_env(env_fn, wrapper_class=wrapper, env_kwargs=env_cfg.kwargs, **common)
    return VecNormalize(envs, **plan.normalize) if plan.normalize else envs


def make_sb3_model(plan: SB3Plan, env, seed: int):
    """SB3's PPO for `plan` on `env`; also sets torch's thread count as our trainer does."""
    import torch
    from stable_baselines3 import PPO

    torch.set_num_threads(plan.torch_threads)
    policy_kwargs = dict(plan.policy_kwargs)
    if "activation_fn" in policy_kwargs:
        activations = {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
        policy_kwargs["activation_fn"] = activations[policy_kwargs["activation_fn"]]
    if "features_extractor_class" in policy_kwargs:  # given by name, so that plans print and compare
        module, _, name = policy_kwargs["features_extractor_class"].partition(":")
        policy_kwargs["features_extractor_class"] = getattr(importlib.import_module(module), name)
    if plan.masked:
        from sb3_contrib import MaskablePPO

        return MaskablePPO(plan.policy, env, policy_kwargs=policy_kwargs, seed=seed, **plan.ppo_kwargs)
    return PPO(plan.policy, env, policy_kwargs=policy_kwargs, seed=seed, **plan.ppo_kwargs)


def describe(plan: SB3Plan) -> dict[str, str]:
    """The SB3 arguments of a plan as readable text (for results tables)."""

    def text(value: Any) -> str:
        if isinstance(value, ShiftedLinearSchedule):
            return f"linear {value.value:g}·(p + {value.batch_fraction:.4g})"
        return repr(value)

    rows = {
        "env": plan.env_kind,
        "VecEnv": plan.vec_env,
        "policy": plan.policy,
        "torch threads": str(plan.torch_threads),
        "algorithm": "sb3_contrib.MaskablePPO" if plan.masked else "PPO",
        "VecNormalize": repr(plan.normalize),
    }
    rows.update({key: text(value) for key, value in plan.ppo_kwargs.items() if key != "verbose"})
    rows.update({f"policy_kwargs.{key}": text(value) for key, value in plan.policy_kwargs.items()})
    return rows
