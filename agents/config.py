"""Training configuration: typed sections with defaults, YAML loading with inheritance, overrides.

Every hyperparameter has a name, a default and a one-line comment. A YAML file only states what
differs from these defaults; `extends: other.yaml` (path relative to the file) inherits another
file first, so families of configs (e.g. all Atari games) share one base.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3 as a float (YAML 1.1 insists on 1.0e-3)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


class ConfigError(ValueError):
    """A config the user must fix; train.py prints it as one `error:` line and exits with 2."""


@dataclass
class AtariConfig:
    """Options of envs.make_atari, used when env_id is an ALE game."""

    noop_max: int = 30  # at most this many no-ops after reset (random start states); 0: none
    frame_skip: int = 4  # emulator frames per agent step (max-pooled over the last two)
    terminal_on_life_loss: bool = True  # a lost life ends the training episode
    fire_reset: bool = True  # press FIRE after reset in games that need it to start
    clip_reward: bool = True  # train on sign(reward); episode statistics stay raw


@dataclass
class EnvConfig:
    num_envs: int = 8  # parallel environments, each one column of the rollout
    vectorization: Literal["auto", "sync", "async"] = "auto"  # auto: async for pixel games
    vector_backend: Literal["gymnasium", "envpool"] = "gymnasium"  # envpool: Atari inside envpool's C++ pool
    kwargs: dict = field(default_factory=dict)  # extra keyword arguments for gymnasium.make
    pixels: bool = False  # observe a non-Atari env through its rgb_array render instead
    screen_size: int = 84  # pixel games: frames resized to screen_size × screen_size
    grayscale: bool = True  # pixel games: convert frames to gray
    frame_stack: int = 4  # pixel games: most recent frames stacked on the channel axis
    atari: AtariConfig = field(default_factory=AtariConfig)
    # False where the time limit is a rule of the game rather than a cut of an endless task
    # (token envs score a completion at its length cap): a truncation then counts as terminal.
    bootstrap_truncated: bool = True


@dataclass
class NetworkConfig:
    kind: Literal["auto", "mlp", "nature_cnn", "impala_cnn", "transformer"] = "auto"  # auto: by observation
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])  # MLP layer widths
    activation: Literal["tanh", "relu"] = "tanh"  # MLP nonlinearity
    shared_trunk: bool = False  # MLP: one trunk for policy and value (False: two separate MLPs)
    d_model: int = 64  # transformer: width
    n_layers: int = 2  # transformer: blocks
    n_heads: int = 4  # transformer: attention heads (must divide d_model)
    value_grad_scale: float = 0.0  # transformer: share of the critic's gradient reaching the trunk


@dataclass
class PPOConfig:
    learning_rate: float = 2.5e-4  # Adam step size at the start
    anneal_lr: bool = True  # linearly decay the learning rate to 0 over training
    adam_eps: float = 1e-5  # Adam epsilon (1e-5 as in the reference PPO implementations)
    num_steps: int = 128  # steps per env per rollout segment; batch = num_envs × num_steps
    num_minibatches: int = 4  # minibatches per epoch
    update_epochs: int = 4  # passes over each batch
    gamma: float = 0.99  # discount factor γ
    gae_lambda: float = 0.95  # GAE λ
    clip_coef: float = 0.2  # ε of the clipped surrogate (and of value clipping)
    anneal_clip: bool = False  # linearly decay clip_coef to 0 with the learning rate
    clip_value_loss: bool = True  # clip the value loss around the old value estimate
    vf_coef: float = 0.5  # c_v, weight of the value loss
    ent_coef: float = 0.0  # c_e, weight of the entropy bonus
    max_grad_norm: float = 0.5  # global gradient-norm clip
    norm_adv: bool = True  # normalise advantages per minibatch
    target_kl: Optional[float] = None  # stop the epochs early once approx KL exceeds this
    loss: Literal["clip", "kl_penalty"] = "clip"  # clipped surrogate or the adaptive KL penalty
    kl_coef: float = 1.0  # kl_penalty: initial β
    kl_target: float = 0.01  # kl_penalty: β doubles above 1.5×target, halves below target/1.5


@dataclass
class RLHFConfig:
    """Text generation as RL (token envs): reference policy, KL control, SFT warm start, GRPO."""

    kl_coef: float = 0.0  # β of the KL to the frozen reference (SFT) policy; 0: no reference
    kl_estimator: Literal["k1", "k3"] = "k1"  # k1: −β(log π − log π_ref) in each token's reward; k3: β·k3 in the loss
    adaptive_kl: bool = False  # adapt β towards kl_target (Ziegler et al. 2019)
    kl_target: float = 1.0  # adaptive β: target KL per completion (nats)
    kl_horizon: int = 10_000  # adaptive β: completions over which β moves by up to 20 %
    sft_steps: int = 0  # supervised warm-start steps on task demonstrations before RL
    sft_learning_rate: float = 1e-3  # Adam step size of the SFT stage
    sft_batch_size: int = 64  # demonstrations per SFT step
    group_size: int = 8  # GRPO: completions sampled per prompt (env.num_envs must be a multiple)
    sample_interval: int = 10  # log a few sampled completions as text every N updates
    init_checkpoint: Optional[str] = None  # start the policy (and π_ref) from this checkpoint's model instead of SFT
    ptx_coef: float = 0.0  # γ_ptx of PPO-ptx: −γ_ptx·LL of a corpus batch added to each minibatch loss; 0: off
    ptx_batch_size: int = 32  # corpus sentences per ptx batch
    ptx_corpus: Optional[str] = None  # corpus.json (train split) of the RLHF pipeline's corpus stage


@dataclass
class PipelineConfig:
    """The offline RLHF pipeline (agents/rlhf_pipeline.py); SFT reads rlhf.sft_*, PPO the usual sections."""

    enabled: bool = False  # run the pipeline stages (corpus → SFT → reward model → PPO-ptx → eval) instead of one run
    corpus_size: int = 3000  # distinct corpus sentences (train + held out)
    held_out_fraction: float = 0.1  # share of corpus sentences held out (SFT held-out cross-entropy)
    eval_prompt_fraction: float = 0.2  # share of prompts (per prompt kind, at least one) kept for evaluation
    rm_pairs: int = 2000  # preference pairs sampled on training prompts (ties are dropped)
    rm_held_out_pairs: int = 400  # pairs sampled on evaluation prompts, for the held-out accuracy
    rm_steps: int = 400  # Bradley–Terry Adam steps
    rm_batch_size: int = 64  # pairs per reward-model step
    rm_learning_rate: float = 3e-4  # reward-model Adam step size
    label_noise: float = 0.0  # probability that a training label is flipped (noisy labeller)
    ptx_coef: float = 0.5  # γ_ptx of PPO-ptx; 0: plain PPO against the reward model
    ptx_batch_size: int = 32  # corpus sentences per ptx term (one batch per PPO minibatch)
    eval_samples_per_prompt: int = 32  # completions sampled per evaluation prompt and policy


@dataclass
class TrainConfig:
    env_id: str = "CartPole-v1"  # any registered gymnasium id
    algo: Literal["ppo", "grpo"] = "ppo"  # grpo: group-normalised advantages, no critic (token envs)
    seed: int = 1  # seeds Python, NumPy, torch and the envs
    total_timesteps: int = 100_000  # env steps over all envs
    run_dir: Optional[str] = None  # default runs/<env>__<config>__<seed>__<timestamp>
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: cuda when available
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 autocast for CNNs where supported
    torch_threads: int = 0  # torch intra-op threads; 0: one per core for CNNs, 1 for small nets
    checkpoint_interval: int = 50  # save a checkpoint every N updates (and always at the end)
    keep_checkpoints: int = 3  # periodic update_<N>.pt files kept, the newest K (final.pt always); 0: all
    stats_window: int = 100  # episodes in the rolling mean of rollout/ep_rew_mean
    capture_video: bool = False  # play and record one evaluation game every video_interval updates
    video_interval: int = 50  # updates between recorded games (videos/step_<env steps>.mp4)
    env: EnvConfig = field(default_factory=EnvConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    rlhf: RLHFConfig = field(default_factory=RLHFConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)

    @property
    def batch_size(self) -> int:
        return self.env.num_envs * self.ppo.num_steps

    @property
    def num_updates(self) -> int:
        # Round up, as Stable-Baselines3 does: training stops at the first update boundary at or
        # past total_timesteps, so the two libraries see the same number of env steps.
        return -(-self.total_timesteps // self.batch_size)


# --------------------------------------------------------------------------------------------
# dict <-> dataclass with strict checking


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(v) for v in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return origin.__name__
    return tp.__name__


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, list):
            return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    elif tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) > sys.float_info.max:  # float() would overflow
                raise ConfigError(f"{key} must be a finite number, got an integer beyond the float range")
            if not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a new annotation kind must be taught to this function
        raise TypeError(f"unsupported annotation {tp} for {key}")
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")


def _unknown_key_error(key: str, valid: list[str], prefix: str) -> ConfigError:
    full = prefix + key
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    hint = f"; did you mean '{prefix}{close[0]}'?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key '{full}'{hint}")


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key_error(str(key), names, prefix)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, prefix + key)
    return cls(**kwargs)


def config_from_dict(data: dict) -> TrainConfig:
    """Build and validate a TrainConfig from a nested dict (unknown keys and bad types refused)."""
    config = _build(TrainConfig, data)
    validate(config)
    return config


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def flatten_dict(data: dict, prefix: str = "") -> dict[str, object]:
    """{"ppo": {"gamma": 0.99}} → {"ppo.gamma": 0.99}: the dotted keys of the command line."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def validate(config: TrainConfig) -> None:
    """Refuse values that are well-typed but meaningless (negative rates, empty batches...)."""
    ppo, env = config.ppo, config.env

    def require(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    require(config.total_timesteps > 0, "total_timesteps must be > 0")
    require(config.checkpoint_interval >= 0, "checkpoint_interval must be >= 0 (0: only at the end)")
    require(config.keep_checkpoints >= 0, "keep_checkpoints must be >= 0 (0: keep all)")
    require(config.stats_window > 0, "stats_window must be > 0")
    require(config.video_interval > 0, "video_interval must be > 0")
    require(config.torch_threads >= 0, "torch_threads must be >= 0 (0: one per core)")
    require(env.num_envs > 0, "env.num_envs must be > 0")
    require(env.screen_size > 0, "env.screen_size must be > 0")
    require(env.frame_stack > 0, "env.frame_stack must be > 0")
    require(env.atari.noop_max >= 0, "env.atari.noop_max must be >= 0")
    require(env.atari.frame_skip > 0, "env.atari.frame_skip must be > 0")
    require(all(h > 0 for h in config.network.hidden_sizes), "network.hidden_sizes must be > 0")
    require(ppo.learning_rate > 0, "ppo.learning_rate must be > 0")
    require(ppo.adam_eps > 0, "ppo.adam_eps must be > 0")
    require(ppo.num_steps > 0, "ppo.num_steps must be > 0")
    require(ppo.update_epochs > 0, "ppo.update_epochs must be > 0")
    require(ppo.num_minibatches > 0, "ppo.num_minibatches must be > 0")
    require(
        ppo.num_minibatches <= config.batch_size,
        f"ppo.num_minibatches ({ppo.num_minibatches}) exceeds the batch size "
        f"env.num_envs × ppo.num_steps = {config.batch_size}",
    )
    require(0 <= ppo.gamma <= 1, "ppo.gamma must be in [0, 1]")
    require(0 <= ppo.gae_lambda <= 1, "ppo.gae_lambda must be in [0, 1]")
    require(ppo.clip_coef > 0, "ppo.clip_coef must be > 0")
    require(ppo.vf_coef >= 0, "ppo.vf_coef must be >= 0")
    require(ppo.ent_coef >= 0, "ppo.ent_coef must be >= 0")
    require(ppo.max_grad_norm > 0, "ppo.max_grad_norm must be > 0")
    require(ppo.target_kl is None or ppo.target_kl > 0, "ppo.target_kl must be > 0 or null")
    require(ppo.kl_coef >= 0, "ppo.kl_coef must be >= 0")
    require(ppo.kl_target > 0, "ppo.kl_target must be > 0")
    rlhf = config.rlhf
    require(rlhf.kl_coef >= 0, "rlhf.kl_coef must be >= 0")
    require(rlhf.kl_target > 0, "rlhf.kl_target must be > 0")
    require(rlhf.kl_horizon > 0, "rlhf.kl_horizon must be > 0")
    require(rlhf.sft_steps >= 0, "rlhf.sft_steps must be >= 0")
    require(rlhf.sft_learning_rate > 0, "rlhf.sft_learning_rate must be > 0")
    require(rlhf.sft_batch_size > 0, "rlhf.sft_batch_size must be > 0")
    require(rlhf.sample_interval > 0, "rlhf.sample_interval must be > 0")
    require(rlhf.ptx_coef >= 0, "rlhf.ptx_coef must be >= 0")
    require(rlhf.ptx_batch_size > 0, "rlhf.ptx_batch_size must be > 0")
    require(rlhf.ptx_coef == 0 or rlhf.ptx_corpus is not None, "rlhf.ptx_coef > 0 needs rlhf.ptx_corpus")
    pipe = config.pipeline
    require(pipe.corpus_size >= 2, "pipeline.corpus_size must be >= 2")
    require(0 < pipe.held_out_fraction < 1, "pipeline.held_out_fraction must be in (0, 1)")
    require(0 < pipe.eval_prompt_fraction < 1, "pipeline.eval_prompt_fraction must be in (0, 1)")
    require(min(pipe.rm_pairs, pipe.rm_held_out_pairs, pipe.rm_steps, pipe.rm_batch_size) > 0, "pipeline.rm_* counts must be > 0")
    require(pipe.rm_learning_rate > 0, "pipeline.rm_learning_rate must be > 0")
    require(0 <= pipe.label_noise < 0.5, "pipeline.label_noise must be in [0, 0.5)")
    require(pipe.ptx_coef >= 0 and pipe.ptx_batch_size > 0, "pipeline.ptx_coef must be >= 0, ptx_batch_size > 0")
    require(pipe.eval_samples_per_prompt > 0, "pipeline.eval_samples_per_prompt must be > 0")
    require(rlhf.group_size > 1, "rlhf.group_size must be > 1 (advantages compare completions of a group)")
    if config.algo == "grpo":
        require(
            env.num_envs % rlhf.group_size == 0,
            f"algo grpo: env.num_envs ({env.num_envs}) must be a multiple of rlhf.group_size ({rlhf.group_size})",
        )
    net = config.network
    require(min(net.d_model, net.n_layers, net.n_heads) > 0, "network.d_model, n_layers, n_heads must be > 0")
    require(net.d_model % net.n_heads == 0, "network.n_heads must divide network.d_model")
    require(0 <= net.value_grad_scale <= 1, "network.value_grad_scale must be in [0, 1]")


# --------------------------------------------------------------------------------------------
# YAML files, inheritance and command-line overrides


def _deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_yaml_config(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML config as a dict, resolving `extends:` chains (relative to each file)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.resolve() in _seen:
        raise ConfigError(f"config inheritance loops back to {path}")
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"malformed YAML in {path}{where}: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"'extends' in {path} must be a file name")
        base = read_yaml_config(path.parent / parent, _seen + (path.resolve(),))
        data = _deep_merge(base, data)
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `dotted.key=value` overrides; values are parsed as YAML (1e-3, true, [64, 64])."""
    data = _deep_merge({}, data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. ppo.learning_rate=1e-3)")
        try:
            value = parse_yaml(raw) if raw != "" else None
        except yaml.YAMLError:
            raise ConfigError(f"cannot parse the value of override '{item}'") from None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config file, apply overrides, check every key, type and range."""
    data = apply_overrides(read_yaml_config(Path(path)), overrides or [])
    return config_from_dict(data)
