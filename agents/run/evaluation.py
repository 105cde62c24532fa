"""Evaluation: whole games played by a trained agent, scored as the game scores them.

Training envs bend the game for learning: in Atari a lost life ends the training episode and
rewards are clipped to their sign. An evaluation env keeps the training observation pipeline
(the agent sees exactly what it was trained on) but restores the game's own semantics: one
episode is one whole game (all lives) and its return is the raw score. Other envs evaluate as
they train.

Seeds: episode i of `play_episodes(..., seed=s)` resets its env with seed s + i, so any single
episode can be replayed on its own. Sampled actions draw from torch's RNG seeded with s inside
torch.random.fork_rng, so the caller's RNG state (e.g. the trainer's) is left as it was.
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterator

import gymnasium as gym
import numpy as np
import torch

from agents.config import ConfigError, TrainConfig
from agents.networks.actor_critic import ActorCritic
from agents.run.video import MP4Writer, video_fps
from envs.atari import is_atari
from envs.normalize import NormalizeObservation
from envs.registry import check_env_id, is_token_env
from envs.vector import make_single_env

# Longest game `record_video_clip` plays for the trainer, in agent steps: 27,000 steps at frame
# skip 4 are the 108,000 frames (30 minutes) that Atari evaluations cap a game at. The MP4 is
# streamed to disk; only a thinned copy of at most CLIP_KEPT_FRAMES frames is held for TensorBoard.
CLIP_MAX_STEPS = 27_000
CLIP_KEPT_FRAMES = 400


class RestartAfterLifeLossWrapper(gym.Wrapper):
    """After a lost life (game not over), play the actions a training env plays on its own there.

    A training env with life-loss terminals restarts after each lost life by itself:
    EpisodicLifeWrapper.reset steps NOOP, then FireResetWrapper.reset presses FIRE and action 2.
    The agent therefore never learned to press FIRE for a new ball; without this wrapper, a
    whole-game evaluation of Breakout would wait forever (up to the 27,000-step time limit)
    for an agent that argmaxes another action. The rewards of these steps count to the score.
    Goes outside the whole Atari stack; reads lives from the base env's `ale.lives()`.
    """

    RESTART_ACTIONS = (0, 1, 2)  # NOOP (EpisodicLifeWrapper), FIRE then action 2 (FireResetWrapper)

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.lives = 0

    def _current_lives(self) -> int:
        return int(self.unwrapped.ale.lives())  # type: ignore[attr-defined]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.lives = self._current_lives()
        return obs, info

    def step(self, action: int) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        total = float(reward)
        lives = self._current_lives()
        if not (terminated or truncated) and 0 < lives < self.lives:
            for restart_action in self.RESTART_ACTIONS:
                obs, reward, terminated, truncated, info = self.env.step(restart_action)
                total += float(reward)
                if terminated or truncated:
                    break
            lives = self._current_lives()
        self.lives = lives
        return obs, total, terminated, truncated, info


def make_eval_env(
    config: TrainConfig, render_mode: str | None = None, normalization: dict | None = None
) -> gym.Env:
    """The evaluation env of `config`: the training observation pipeline, whole-game episodes.

    Atari: make_atari with terminal_on_life_loss=False and clip_reward=False (one episode = one
    game, raw score), plus RestartAfterLifeLossWrapper where training restarted lives by itself.
    Other envs: the training env. `render_mode="rgb_array"` makes env.render() return the game's
    original picture (Atari: the 210×160 RGB screen, not the 84×84 network input). With
    env.normalize_obs, observations are normalised with the frozen statistics `normalization`
    (a checkpoint's, or the trainer's now), as the agent saw them in training.
    Raises ConfigError for an unknown env id; constructor errors propagate.
    """
    env = _make_eval_env(config, render_mode)
    if config.env.normalize_obs:
        if normalization is None or normalization.get("observations") is None:
            raise ConfigError("env.normalize_obs: evaluating needs the run's normalisation statistics")
        env = NormalizeObservation(env, normalization["observations"])
    return env


def _make_eval_env(config: TrainConfig, render_mode: str | None) -> gym.Env:
    env_id, env_cfg = config.env_id, config.env
    check_env_id(env_id, env_cfg.imports)
    kwargs = dict(env_cfg.kwargs)
    if render_mode is not None:
        kwargs["render_mode"] = render_mode
    if is_atari(env_id):
        trained = env_cfg.atari
        atari = dataclasses.replace(trained, terminal_on_life_loss=False, clip_reward=False)
        env = make_single_env(env_id, dataclasses.replace(env_cfg, atari=atari, kwargs=kwargs))
        meanings = env.unwrapped.get_action_meanings()  # type: ignore[attr-defined]
        if trained.terminal_on_life_loss and trained.fire_reset and "FIRE" in meanings:
            env = RestartAfterLifeLossWrapper(env)
        return env
    if env_cfg.pixels:
        # Pixel envs always render rgb_array: their observations are made from it.
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"pixel envs only render rgb_array, not {render_mode!r}")
        return make_single_env(env_id, env_cfg)
    return make_single_env(env_id, dataclasses.replace(env_cfg, kwargs=kwargs))


def eval_video_fps(config: TrainConfig, env: gym.Env | None = None) -> float:
    """Frame rate of evaluation videos of `config` (one frame per agent step, real speed;
    see agents/run/video.py). `env`: its eval env if already made (read for metadata["render_fps"])."""
    if is_atari(config.env_id):
        return video_fps(True, config.env.atari.frame_skip, None)
    if env is None:
        env = make_eval_env(config)
        env.close()
    return video_fps(False, 1, env.metadata.get("render_fps"))


def _agent_device(agent: torch.nn.Module) -> torch.device:
    parameter = next(agent.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@torch.inference_mode()
def play_episode(
    agent: ActorCritic,
    env: gym.Env,
    seed: int | None,
    deterministic: bool,
    device: torch.device,
    on_frame: Callable[[np.ndarray], None] | None = None,
    max_steps: int | None = None,
    masks: bool = True,
) -> dict[str, Any]:
    """Play one episode of `env` with `agent` → {"return", "length", "truncated"} (+ "text",
    "prompt" for token envs). Length counts agent steps. `on_frame` receives env.render() after
    the reset and after every agent step (the env must render rgb_array). `max_steps` cuts the
    episode after that many agent steps (reported as truncated). With `masks`, actions the env
    rules out in info["action_mask"] are never taken."""
    obs, info = env.reset(seed=seed)
    if on_frame is not None:
        on_frame(env.render())
    total, length = 0.0, 0
    terminated = truncated = False
    while not (terminated or truncated):
        if max_steps is not None and length >= max_steps:
            truncated = True
            break
        obs_tensor = torch.as_tensor(np.asarray(obs)[None], device=device)
        mask = None
        if masks and "action_mask" in info:
            mask = torch.as_tensor(np.asarray(info["action_mask"], dtype=bool)[None], device=device)
        action, _, _ = agent.act(obs_tensor, deterministic=deterministic, mask=mask)
        obs, reward, terminated, truncated, info = env.step(agent.distribution.to_env(action)[0])
        total += float(reward)
        length += 1
        if on_frame is not None:
            on_frame(env.render())
    truncated = bool(truncated and not terminated)
    result: dict[str, Any] = {"return": total, "length": length, "truncated": truncated}
    if "text" in info:
        result["text"] = info["text"]
        result["prompt"] = info.get("prompt_text", "")
    return result


@contextlib.contextmanager
def _evaluation_mode(agent: ActorCritic, seed: int, device: torch.device) -> Iterator[None]:
    """agent.eval() and torch's RNG seeded with `seed`; the agent's mode and the caller's RNG
    state are restored on exit (the trainer's sampling must not depend on whether it filmed)."""
    was_training = agent.training
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        agent.eval()
        try:
            yield
        finally:
            agent.train(was_training)


def play_episodes(
    agent: ActorCritic,
    config: TrainConfig,
    episodes: int,
    seed: int,
    deterministic: bool,
    video_dir: str | Path | None = None,
    device: str | torch.device | None = None,
    max_steps: int | None = None,
    on_episode: Callable[[int, dict[str, Any]], None] | None = None,
    normalization: dict | None = None,
) -> list[dict[str, Any]]:
    """Play `episodes` whole games of `config`'s evaluation env (episode i seeded with seed + i).

    Returns one dict per episode: "return" (raw score), "length" (agent steps), "truncated",
    "seed"; token envs add "text" (the sampled completion) and "prompt". With `video_dir`, the
    game's original RGB frames (one after the reset and one after each agent step) are streamed
    to video_dir/episode_<i>.mp4 at eval_video_fps, and the dict adds "video" (its path) and
    "frames" (frames written). Token envs have no video (their episodes are texts): ValueError.
    `device`: where observations go; by default the agent's own device. `max_steps`: see
    play_episode. `on_episode(i, result)` is called as each episode ends (to print it at once).
    `normalization`: the run's statistics, where it normalises observations (make_eval_env).
    """
    if video_dir is not None and is_token_env(config.env_id):
        raise ValueError(f"{config.env_id} episodes are texts; there is no video to record")
    device = torch.device(device) if device is not None else _agent_device(agent)
    env = make_eval_env(config, "rgb_array" if video_dir is not None else None, normalization)
    masks = config.env.action_masks is not False
    if video_dir is not None:
        Path(video_dir).mkdir(parents=True, exist_ok=True)
    results = []
    # Closing the env (gymnasium envs are context managers) also when a video cannot be written.
    with env, _evaluation_mode(agent, seed, device):
        fps = eval_video_fps(config, env)
        for index in range(episodes):
            episode_seed = seed + index
            if video_dir is None:
                result = play_episode(
                    agent, env, episode_seed, deterministic, device, max_steps=max_steps, masks=masks
                )
            else:
                path = Path(video_dir) / f"episode_{index:03d}.mp4"
                with MP4Writer(path, fps) as writer:
                    result = play_episode(
                        agent, env, episode_seed, deterministic, device, writer.append, max_steps, masks
                    )
                result.update(video=str(path), frames=writer.count)
            result["seed"] = episode_seed
            results.append(result)
            if on_episode is not None:
                on_episode(index, result)
    return results


def record_video_clip(
    agent: ActorCritic,
    config: TrainConfig,
    seed: int,
    path: str | Path,
    deterministic: bool = False,
    max_steps: int | None = CLIP_MAX_STEPS,
    max_kept_frames: int = CLIP_KEPT_FRAMES,
    normalization: dict | None = None,
) -> tuple[np.ndarray, float]:
    """Play one whole evaluation game in an env of its own, stream it to an MP4 at `path`, and
    return (frames, fps) of a copy for TensorBoard: every frame when the game is short, every
    2nd, 4th... frame of a long one (at most `max_kept_frames`, fps divided alike, so the clip
    still plays at real speed).

    Made for the trainer: the training envs, the caller's torch RNG and the agent's train/eval
    mode are left as they were. Sampled actions by default: those are what the agent trains with.
    """
    if is_token_env(config.env_id):
        raise ValueError(f"{config.env_id} episodes are texts; there is no video to record")
    device = _agent_device(agent)
    env = make_eval_env(config, "rgb_array", normalization)
    masks = config.env.action_masks is not False
    kept: list[np.ndarray] = []
    stride = 1
    seen = 0

    def keep(frame: np.ndarray) -> None:
        nonlocal stride, seen
        if seen % stride == 0:
            kept.append(np.array(frame))  # copied: a renderer may reuse its buffer
            if len(kept) > max_kept_frames:
                del kept[1::2]
                stride *= 2
        seen += 1

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with env, _evaluation_mode(agent, seed, device):
        fps = eval_video_fps(config, env)
        with MP4Writer(path, fps) as writer:

            def on_frame(frame: np.ndarray) -> None:
                writer.append(frame)
                keep(frame)

            play_episode(agent, env, seed, deterministic, device, on_frame, max_steps, masks)
    return np.stack(kept), fps / stride
