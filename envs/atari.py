"""Atari games (ALE) with the standard DQN/PPO preprocessing, built from envs/atari_wrappers.py."""

from __future__ import annotations

import gymnasium as gym

from envs.atari_wrappers import (
    ClipRewardWrapper,
    EpisodicLifeWrapper,
    FireResetWrapper,
    FrameStackWrapper,
    MaxAndSkipWrapper,
    NoopResetWrapper,
    WarpFrameWrapper,
)


def is_atari(env_id: str) -> bool:
    """True if `env_id` is registered with ale_py's AtariEnv as its entry point."""
    try:
        spec = gym.spec(env_id.rpartition(":")[2])
    except gym.error.Error:
        return False
    entry_point = spec.entry_point
    module = entry_point.split(":")[0] if isinstance(entry_point, str) else entry_point.__module__
    return module.split(".")[0] == "ale_py"


def make_atari(
    env_id: str,
    noop_max: int = 30,
    frame_skip: int = 4,
    terminal_on_life_loss: bool = True,
    fire_reset: bool = True,
    clip_reward: bool = True,
    screen_size: int = 84,
    grayscale: bool = True,
    frame_stack: int = 4,
    render_mode: str | None = None,
    **make_kwargs,
) -> gym.Env:
    """Make an Atari env preprocessed as in DeepMind's Nature DQN and most PPO baselines.

    Meant for `<Game>NoFrameskip-v4` ids (no built-in frame skip, no sticky actions), the
    setting of SB3's AtariWrapper and CleanRL. Observations are uint8 of shape
    (frame_stack, screen_size, screen_size) (times 3 channels if not grayscale), newest frame last.

    Args:
        env_id: a registered ALE id, e.g. "BreakoutNoFrameskip-v4".
        noop_max: most no-ops taken after a reset (random start states); 0 disables.
        frame_skip: emulator frames per agent step (action repeat + max of the last two frames).
        terminal_on_life_loss: a lost life ends the training episode (terminated=True).
        fire_reset: press FIRE on reset in games that have a FIRE action.
        clip_reward: replace rewards by their sign.
        screen_size: side of the square frame after resizing.
        grayscale: convert frames to gray before resizing.
        frame_stack: number of most recent frames stacked on the channel axis.
        render_mode: passed to gymnasium.make ("rgb_array", "human" or None).
        make_kwargs: further keyword arguments of the ALE env, e.g. repeat_action_probability.

    info["episode"] = {"r": score, "l": emulator frames, "t": seconds} comes from a
    RecordEpisodeStatistics directly on the raw env: it is the raw, unclipped score of a whole
    game (all lives), and it appears only at the real game over, never at a lost life.
    """
    if not is_atari(env_id):
        raise ValueError(f"{env_id!r} is not an ALE (ale_py) env id")
    built_in_skip = gym.spec(env_id).kwargs.get("frameskip", 1)
    if frame_skip > 1 and built_in_skip != 1:
        raise ValueError(
            f"{env_id} already skips frames (frameskip={built_in_skip}); "
            "use a <Game>NoFrameskip-v4 id or frame_skip=1"
        )
    env = gym.make(env_id, render_mode=render_mode, **make_kwargs)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if noop_max > 0:
        env = NoopResetWrapper(env, noop_max=noop_max)
    if frame_skip > 1:
        env = MaxAndSkipWrapper(env, skip=frame_skip)
    if terminal_on_life_loss:
        env = EpisodicLifeWrapper(env)
    if fire_reset and "FIRE" in env.unwrapped.get_action_meanings():  # type: ignore[attr-defined]
        env = FireResetWrapper(env)
    env = WarpFrameWrapper(env, width=screen_size, height=screen_size, grayscale=grayscale)
    if clip_reward:
        env = ClipRewardWrapper(env)
    env = FrameStackWrapper(env, num_stack=frame_stack)
    return env
