"""The Python API, in Stable-Baselines3's shape:

    from agents import PPO
    model = PPO("CartPole-v1", config="configs/cartpole.yaml", seed=2, **{"ppo.learning_rate": 1e-3})
    model = PPO(lambda: MyGame(), ...)                  # a factory or an instance of your own env
    model.learn(total_timesteps=100_000, callback=fn)   # fn(metrics: dict) -> bool (False stops)
    action, _ = model.predict(obs, deterministic=True)  # numpy in, numpy out; one obs or a batch
    model.save("cartpole.pt"); model = PPO.load("cartpole.pt")   # or PPO.load(RUN_DIR)

`learn` is train.py's trainer (agents/run/trainer.py): the same run dir, TensorBoard curves,
checkpoints, signals and config. Calling it again trains that many more steps in the same run.
A checkpoint holds the spaces the model was trained on (envs/space_codec.py), so `load` and
`predict` need no env. GRPO (`algo: grpo`) and the RLHF pipeline (`pipeline.enabled`, e.g.
configs/rlhf_sentiment.yaml: its PPO-ptx stage's run becomes the model's) go through the same class.
"""

from __future__ import annotations

import copy
import importlib.resources
import itertools
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from agents.config import ConfigError, TrainConfig, apply_values, config_from_dict, read_yaml_config
from agents.networks.actor_critic import ActorCritic
from agents.networks.build import build_agent
from agents.run.callbacks import FunctionCallback
from agents.run.checkpoint import (
    checkpoint_config,
    checkpoint_spaces,
    load_checkpoint,
    newest_checkpoint,
    save_checkpoint,
)
from agents.run.resume import find_resume_point, with_total_timesteps
from agents.run.run_dir import CHECKPOINT_DIR, CONFIG_FILE
from agents.run.stages import PPO_RUN
from agents.run.trainer import train
from envs.layout import ObservationLayout
from envs.normalize import RunningMeanStd
from envs.registry import USER_ENV_NAMESPACE

EnvLike = str | Callable[[], gym.Env] | gym.Env
_registered = itertools.count(1)


def _factory_of(env: Callable[[], gym.Env] | gym.Env) -> tuple[Callable[[], gym.Env], str]:
    """(a factory, the env's class name) for a factory (called once per env a run makes) or an
    instance (deep-copied for each: the caller's own object is never stepped)."""
    if isinstance(env, gym.Env):
        instance = env

        def factory() -> gym.Env:
            return copy.deepcopy(instance)

        return factory, type(env.unwrapped).__name__
    if not callable(env):
        raise ConfigError(f"env must be an env id, a gymnasium.Env or a factory of one, got {env!r}")
    probe = env()
    if not isinstance(probe, gym.Env):
        raise ConfigError(f"env factory {env!r} returned {type(probe).__name__}, not a gymnasium.Env")
    name = type(probe.unwrapped).__name__
    probe.close()
    return env, name


def register_user_env(env: Callable[[], gym.Env] | gym.Env, env_id: str | None = None) -> str:
    """Register your own env (factory or instance) with gymnasium, under `env_id` or a new
    python/<Class>-v<k>; returns the id."""
    factory, name = _factory_of(env)
    env_id = env_id or f"{USER_ENV_NAMESPACE}/{name}-v{next(_registered)}"
    gym.register(id=env_id, entry_point=factory)
    return env_id


def config_file(path: str | Path) -> Path:
    """`path`, or where it is not found, the shipped config of that name (configs/ is installed
    with the package): `configs/cartpole.yaml` works from any directory."""
    path = Path(path)
    if path.exists() or path.is_absolute() or path.parent.name not in ("", "configs"):
        return path
    shipped = Path(str(importlib.resources.files("configs"))) / path.name
    return shipped if shipped.is_file() else path


class PPO:
    """A PPO agent for one game: train it (`learn`), use it (`predict`), keep it (`save`, `load`)."""

    def __init__(
        self,
        env: EnvLike | None = None,
        config: str | Path | dict | None = None,
        *,
        progress: bool | None = None,
        **overrides: Any,
    ) -> None:
        """`env`: an env id, or your own env as a factory or an instance; None: the config's
        env_id. `config`: a YAML file (see configs/), a dict of config keys, or None (defaults).
        `overrides`: config keys, dotted for sections, e.g. seed=2, **{"ppo.learning_rate": 1e-3}.
        `progress`: None prints nothing, True a progress bar (a line per few updates off a
        terminal), False those lines."""
        if isinstance(config, (str, Path)):
            data, self.config_name = read_yaml_config(config_file(config)), Path(config).stem
        else:
            data, self.config_name = dict(config or {}), "api"
        if env is not None:
            data["env_id"] = env if isinstance(env, str) else register_user_env(env)
        self.config: TrainConfig = config_from_dict(apply_values(data, overrides))
        self.progress = progress
        self.run_dir: Path | None = None
        self.agent: ActorCritic | None = None
        self._checkpoint: dict[str, Any] | None = None
        self._resume_from: Path | None = None  # a loaded checkpoint inside a run: learn() goes on from it

    # -------------------------------------------------------------------------------- training
    def learn(self, total_timesteps: int, callback: Callable[[dict], bool | None] | None = None) -> PPO:
        """Train for `total_timesteps` env steps (more steps in the same run when called again).
        `callback(metrics)` runs after every update with what was logged (plus global_step and
        update); returning False ends training there (final.pt is written). torch's thread count
        is the caller's again afterwards."""
        if isinstance(total_timesteps, bool) or not isinstance(total_timesteps, int) or total_timesteps <= 0:
            raise ValueError(f"total_timesteps must be a positive integer, got {total_timesteps!r}")
        if self.run_dir is None and self._checkpoint is not None:
            raise RuntimeError(
                "this model was loaded from a file outside its run dir; learn() goes on in a run dir: "
                "load that (PPO.load(RUN_DIR)) to train it further"
            )
        callbacks = [FunctionCallback(callback)] if callback is not None else []
        threads = torch.get_num_threads()
        try:
            if self.run_dir is None:
                config = copy.deepcopy(self.config)
                config.total_timesteps = total_timesteps
            if self.run_dir is None and config.pipeline.enabled:
                # The RLHF pipeline (corpus → SFT → reward model → PPO-ptx → evaluation) with
                # `total_timesteps` for its PPO-ptx stage, whose run becomes this model's.
                from agents.run.pipeline import run_pipeline

                run_pipeline(config, config.pipeline, self.config_name, progress=self.progress)
                self.run_dir = Path(config.run_dir) / PPO_RUN
            elif self.run_dir is None:
                self.run_dir = train(config, self.config_name, self.progress, callbacks=callbacks).run_dir
            else:
                point = find_resume_point(self._resume_from or self.run_dir)
                point = with_total_timesteps(point, point.global_step + total_timesteps)
                train(point.config, progress=self.progress, resume=point, callbacks=callbacks)
        finally:
            torch.set_num_threads(threads)
        self._resume_from = None  # from now on, the run's newest checkpoint
        self._adopt(load_checkpoint(newest_checkpoint(self.run_dir)))
        return self

    # ------------------------------------------------------------------------------ using it
    def predict(
        self, observation: Any, deterministic: bool = False, action_masks: Any = None
    ) -> tuple[np.ndarray, None]:
        """The action for one observation, or a batch of actions for a batch (numpy in, numpy
        out, clipped to a Box's bounds as the env takes them); the second item is None (SB3's
        recurrent state). Observations as the game makes them: images channels last or first,
        Dict / Tuple observations as dicts / tuples (a batch of those as a list); Atari and
        rendered-pixel games as the run's env makes them (`make_env()`). `action_masks` (bool,
        [n] or [B, n]): actions allowed, where the game masks them (a Dict observation's
        "action_mask" entry is read by itself)."""
        if self.agent is None:
            raise RuntimeError("this model has not been trained or loaded yet: call learn() or PPO.load()")
        observations, masks, batched = self._prepare(observation)
        if action_masks is not None:
            masks = np.asarray(action_masks, dtype=bool).reshape(len(observations), -1)
        device = next(self.agent.parameters()).device
        tensor = torch.as_tensor(observations, device=device)
        masked = masks is not None and self.config.env.action_masks is not False
        mask = torch.as_tensor(masks, device=device) if masked else None
        with torch.inference_mode():
            action, _, _ = self.agent.act(tensor, deterministic=deterministic, mask=mask)
        actions = self.agent.distribution.to_env(action)
        return (actions if batched else actions[0]), None

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """One env of the model's game as training saw it (Atari preprocessing, rendered pixels),
        whose observations `predict` takes."""
        from agents.run.evaluation import make_eval_env

        # Unnormalised: predict applies the run's frozen statistics itself.
        config = copy.deepcopy(self.config)
        config.env.normalize_obs = False
        return make_eval_env(config, render_mode)

    @property
    def observation_space(self) -> gym.Space:
        """What `predict` takes (the game's own observation space)."""
        return self.layout.source_space if self.layout is not None else self.network_space

    # ------------------------------------------------------------------------------ keeping it
    def save(self, path: str | Path) -> Path:
        """Write the model (weights, optimizer, config, spaces, normalisation) to one file."""
        if self._checkpoint is None:
            raise RuntimeError("nothing to save yet: call learn() or PPO.load() first")
        path = Path(path)
        save_checkpoint(path, self._checkpoint)
        return path

    @classmethod
    def load(cls, path: str | Path, env: EnvLike | None = None, device: str = "cpu") -> PPO:
        """A model from a saved file, a run dir (its final or newest checkpoint) or a checkpoint in
        one. `env` is needed only to go on training a model of your own env object (the env of
        its run cannot be made from a config); `learn` goes on in the model's run dir."""
        checkpoint = newest_checkpoint(Path(path))
        state = load_checkpoint(checkpoint, device)
        model = cls.__new__(cls)
        model.config = checkpoint_config(state, checkpoint)
        if isinstance(env, str):
            model.config.env_id = env
        elif env is not None:  # under its run's id: resuming compares the configs
            register_user_env(env, model.config.env_id)
        model.config_name, model.progress = "api", None
        run_dir = checkpoint.parent.parent
        in_run = checkpoint.parent.name == CHECKPOINT_DIR and (run_dir / CONFIG_FILE).is_file()
        model.run_dir = run_dir if in_run else None
        # A checkpoint named inside a run (not the run dir): learn() goes on from that one, as
        # `train.py --resume CHECKPOINT` does.
        model._resume_from = checkpoint if in_run and Path(path).is_file() else None
        model._adopt(state, device)
        return model

    # ------------------------------------------------------------------------------ internals
    def _adopt(self, state: dict[str, Any], device: str | torch.device = "cpu") -> None:
        """Take a checkpoint's network, spaces and normalisation statistics as this model's."""
        self._checkpoint = state
        self.network_space, action_space, source = checkpoint_spaces(state, self.config)
        self.action_space = action_space
        self.layout = ObservationLayout(source, action_space) if source is not None else None
        agent = build_agent(self.config, self.network_space, action_space)
        agent.load_state_dict(state["model"])
        self.agent = agent.to(device).eval()
        statistics = (state.get("normalization") or {}).get("observations")
        self.obs_rms = None
        if self.config.env.normalize_obs and statistics is not None:
            self.obs_rms = RunningMeanStd(self.network_space.shape)
            self.obs_rms.load_state_dict(statistics)

    def _prepare(self, observation: Any) -> tuple[np.ndarray, np.ndarray | None, bool]:
        """(a batch in the network's layout, the masks it carried or None, whether it was a batch)."""
        if self.layout is not None:
            source = self.layout.source_space
            if isinstance(source, (gym.spaces.Dict, gym.spaces.Tuple)):
                batched = isinstance(observation, list)
                items = observation if batched else [observation]
            else:
                array = np.asarray(observation)
                batched = array.shape[1:] == source.shape
                items = list(array) if batched else [array]
                if not batched and array.shape != source.shape:
                    raise ValueError(f"observation shape {array.shape}: expected {source.shape} or a batch")
            laid_out = [self.layout(item) for item in items]
            observations = np.stack([obs for obs, _ in laid_out])
            found = [mask for _, mask in laid_out]
            masks = np.stack(found) if all(m is not None for m in found) else None
        else:
            shape = self.network_space.shape
            observations = np.asarray(observation)
            batched = observations.shape[1:] == shape and observations.ndim == len(shape) + 1
            if not batched:
                if observations.shape != shape:
                    raise ValueError(f"observation shape {observations.shape}: expected {shape} or a batch")
                observations = observations[None]
            masks = None
        if self.obs_rms is not None:
            observations = self.obs_rms.normalize(observations)
        if observations.dtype == np.float64:
            observations = observations.astype(np.float32)
        return observations, masks, batched
