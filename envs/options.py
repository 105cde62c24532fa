"""The options that shape a game as the learner sees it: the `env` section of a training config.

They live here, beside the games, so that envs/ needs nothing of agents/ (agents.config uses
these dataclasses as its `env` section). Every field has a default and a one-line comment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Union


class ConfigError(ValueError):
    """A setting the user must fix; the entry scripts print it as one `error:` line and exit with 2."""


ATARI_KEY = "env.atari"  # where AtariOptions sit in a training config


@dataclass
class AtariOptions:
    """Keyword arguments of envs.atari.make_atari and of the envpool backend, for ALE games."""

    noop_max: int = 30  # at most this many no-ops after reset (random start states); 0: none
    frame_skip: int = 4  # emulator frames per agent step (max-pooled over the last two)
    terminal_on_life_loss: bool = True  # a lost life ends the training episode
    fire_reset: bool = True  # press FIRE after reset in games that need it to start
    clip_reward: bool = True  # train on sign(reward); episode statistics stay raw

    def as_kwargs(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_game(self, env_id: str) -> None:
        """Refuse options the ALE id cannot honour, naming them as a config spells them
        (env.atari.frame_skip). envs.atari.make_atari refuses them too, but only when the env is
        made, in the words of its own arguments (frame_skip=1), which no config has."""
        if self.frame_skip <= 1:
            return
        import gymnasium as gym  # here: this module needs nothing else of the games

        from envs.atari import is_atari

        if not is_atari(env_id):
            return
        built_in = gym.spec(env_id.rpartition(":")[2]).kwargs.get("frameskip", 1)
        if built_in != 1:
            raise ConfigError(
                f"{env_id} already skips frames (frameskip={built_in}), and {ATARI_KEY}.frame_skip="
                f"{self.frame_skip} would skip again; "
                f"use a <Game>NoFrameskip-v4 id or {ATARI_KEY}.frame_skip=1"
            )


# Vector backends that step their envs themselves: no gymnasium worker processes (num_workers, overlap).
SELF_STEPPING_BACKENDS = ("envpool", "native")


@dataclass
class EnvOptions:
    num_envs: int = 8  # parallel environments, each one column of the rollout
    # auto: async for pixel games or with num_workers, else sync; overlap: two async halves, one
    # stepping while the policy acts for the other
    vectorization: Literal["auto", "sync", "async", "overlap"] = "auto"
    # Env worker processes of async / overlap: 0, one per env (gymnasium's AsyncVectorEnv); K, K
    # processes stepping about num_envs / K envs each (envs/shards.py; for envs that step in
    # microseconds). auto becomes async when K > 0. Per rank under torchrun.
    num_workers: int = 0
    # Who steps the envs: gymnasium's vector envs; envpool (Atari inside envpool's C++ pool); native
    # (CartPole-v1 stepped by envs/cartpole_vector.py, the same games without gymnasium's per-env
    # layers); auto: native where it can play the game as configured, gymnasium otherwise.
    vector_backend: Literal["auto", "gymnasium", "envpool", "native"] = "auto"
    kwargs: dict = field(default_factory=dict)  # extra keyword arguments for gymnasium.make
    imports: list[str] = field(default_factory=list)  # modules imported before gymnasium.make (register ids)
    # Wrappers around the game, innermost first: "module:Class", or {"module:Class": {keyword: value}}.
    wrappers: list[Union[str, dict]] = field(default_factory=list)
    # Invalid-action masking from info["action_mask"] (Discrete actions): auto (when the env reports
    # one), on or off (YAML reads on / off as true / false).
    action_masks: Union[Literal["auto"], bool] = "auto"
    pixels: bool = False  # observe a non-Atari env through its rgb_array render instead
    screen_size: int = 84  # pixel games: frames resized to screen_size × screen_size
    grayscale: bool = True  # pixel games: convert frames to gray
    frame_stack: int = 4  # pixel games: most recent frames stacked on the channel axis
    atari: AtariOptions = field(default_factory=AtariOptions)
    normalize_obs: bool = False  # observations by their running mean and std, clipped to ±10 (VecNormalize)
    normalize_reward: bool = False  # rewards scaled by the running std of the discounted return, clipped ±10
    # False where the time limit is a rule of the game rather than a cut of an endless task
    # (token envs score a completion at its length cap): a truncation then counts as terminal.
    bootstrap_truncated: bool = True

    def check_workers(self) -> None:
        """Refuse an env.num_workers the vectorization cannot use."""
        workers = self.num_workers
        if workers < 0 or workers > self.num_envs:
            raise ConfigError(
                f"env.num_workers must be between 0 (one process per env) and env.num_envs "
                f"({self.num_envs}), got {workers}"
            )
        if workers and self.vectorization == "sync":
            raise ConfigError(
                f"env.num_workers: {workers} starts worker processes, and env.vectorization: sync steps "
                "every env in this process; use async, overlap or auto"
            )
        if workers == 1 and self.vectorization == "overlap":
            raise ConfigError(
                "env.vectorization: overlap steps two groups of envs in turn: env.num_workers must be 0 "
                "(one process per env) or >= 2"
            )
        if workers and self.vector_backend in SELF_STEPPING_BACKENDS:
            raise ConfigError(
                f"env.num_workers is for gymnasium's vector envs; env.vector_backend: {self.vector_backend} "
                "steps its envs itself"
            )

    def frame_kwargs(self) -> dict[str, Any]:
        """screen_size, grayscale, frame_stack: the keyword arguments every pixel pipeline takes."""
        return {"screen_size": self.screen_size, "grayscale": self.grayscale, "frame_stack": self.frame_stack}


class GameSpec(Protocol):
    """What envs/ reads of a run to build its envs; agents.config.TrainConfig is one."""

    env_id: str
    seed: int
    env: EnvOptions
