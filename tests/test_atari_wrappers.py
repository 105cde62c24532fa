"""Tests for envs/atari_wrappers.py and envs/atari.py.

Two kinds: single wrappers against a tiny scripted game whose every frame and reward we know, and
the full Atari stack against an independent reference, Stable-Baselines3's AtariWrapper.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.atari_wrappers import AtariWrapper

from envs.atari import is_atari, make_atari
from envs.atari_wrappers import (
    ClipRewardWrapper,
    EpisodicLifeWrapper,
    FireResetWrapper,
    FrameStackWrapper,
    MaxAndSkipWrapper,
    NoopResetWrapper,
    WarpFrameWrapper,
)


class ScriptedGame(gym.Env):
    """A fake Atari game with known frames: frame k (k = emulator frames since reset) shows
    k in channel 0 on odd frames and in channel 1 on even frames (a flickering sprite; with one
    channel, always in channel 0).
    Every frame scores `points`; a life is lost every `frames_per_life` frames; the game is over
    when no lives are left. Exposes `ale.lives()` and `get_action_meanings()` like ALE."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, lives: int = 3, frames_per_life: int = 5, points: float = 7.0, shape=(2, 2, 3)):
        self.start_lives = lives
        self.frames_per_life = frames_per_life
        self.points = points
        self.observation_space = spaces.Box(0, 255, shape, np.uint8)
        self.action_space = spaces.Discrete(4)
        self.ale = SimpleNamespace(lives=lambda: self.lives)
        self.actions: list[int] = []
        self.num_resets = 0
        self.frame = 0
        self.lives = lives

    def get_action_meanings(self) -> list[str]:
        return ["NOOP", "FIRE", "RIGHT", "LEFT"]

    def _obs(self) -> np.ndarray:
        obs = np.zeros(self.observation_space.shape, np.uint8)
        channel = 0 if self.frame % 2 else 1
        obs[..., channel % obs.shape[-1]] = self.frame % 256
        return obs

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.frame, self.lives = 0, self.start_lives
        self.num_resets += 1
        return self._obs(), {}

    def step(self, action):
        self.actions.append(int(action))
        self.frame += 1
        if self.frame % self.frames_per_life == 0:
            self.lives -= 1
        return self._obs(), self.points, self.lives == 0, False, {}


# ---------------------------------------------------------------- single wrappers, fake game


def test_clip_reward_keeps_only_the_sign():
    env = ClipRewardWrapper(ScriptedGame())
    assert [env.reward(r) for r in (7, -3.5, 0.0, 0.2, -0.01)] == [1.0, -1.0, 0.0, 1.0, -1.0]


def test_max_and_skip_repeats_action_sums_rewards_and_maxes_last_two_frames():
    game = ScriptedGame(lives=1, frames_per_life=6, points=7.0)
    env = MaxAndSkipWrapper(game, skip=4)
    env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(3)
    assert game.actions == [3, 3, 3, 3]
    assert reward == 4 * 7.0 and not terminated and not truncated
    # Frames 3 (odd: channel 0) and 4 (even: channel 1); the max keeps both sprites.
    assert obs[0, 0].tolist() == [3, 4, 0]
    # The game ends at frame 6, inside the skip: max over the true last frames 5 and 6.
    obs, reward, terminated, _, _ = env.step(2)
    assert game.actions[4:] == [2, 2] and reward == 2 * 7.0 and terminated
    assert obs[0, 0].tolist() == [5, 6, 0]


def test_frame_stack_is_channels_first_oldest_to_newest():
    env = FrameStackWrapper(ScriptedGame(lives=9, frames_per_life=100, shape=(3, 5, 1)), num_stack=4)
    assert env.observation_space.shape == (4, 3, 5)
    first, _ = env.reset(seed=0)
    assert first.shape == (4, 3, 5) and first.dtype == np.uint8
    assert (first == 0).all()  # the reset frame, repeated
    history = [first]
    for _ in range(5):
        history.append(env.step(0)[0])
    assert [int(frame[0, 0]) for frame in history[2]] == [0, 0, 1, 2]
    assert [int(frame[0, 0]) for frame in history[3]] == [0, 1, 2, 3]
    assert [int(frame[0, 0]) for frame in history[5]] == [2, 3, 4, 5]
    assert (history[1][0] == 0).all()  # an earlier observation is not changed by later steps


def test_noop_reset_is_reproducible_from_the_seed():
    game = ScriptedGame(lives=1, frames_per_life=1000)
    env = NoopResetWrapper(game, noop_max=30)
    counts = []
    for seed in range(20):
        env.reset(seed=seed)
        counts.append(game.frame)
        env.reset(seed=seed)
        assert game.frame == counts[-1]
    assert all(1 <= n <= 30 for n in counts) and len(set(counts)) > 5
    assert set(game.actions) == {0}


def test_fire_reset_presses_fire_then_action_2():
    game = ScriptedGame()
    env = FireResetWrapper(game)
    env.reset(seed=0)
    assert game.actions == [1, 2]

    class NoFireGame(ScriptedGame):
        def get_action_meanings(self):
            return ["NOOP", "UP", "DOWN"]

    with pytest.raises(ValueError):
        FireResetWrapper(NoFireGame())


def test_warp_frame_gray_and_color():
    game = ScriptedGame(shape=(210, 160, 3))
    pure_red = np.zeros((210, 160, 3), np.uint8)
    pure_red[..., 0] = 255
    gray = WarpFrameWrapper(game)
    assert gray.observation_space.shape == (84, 84, 1)
    warped = gray.observation(pure_red)
    assert warped.shape == (84, 84, 1) and warped.dtype == np.uint8
    assert (warped == 76).all()  # ITU-R BT.601 luma of pure red: 0.299 * 255
    color = WarpFrameWrapper(game, width=64, height=48, grayscale=False)
    assert color.observation(pure_red).shape == (48, 64, 3)
    assert (color.observation(pure_red) == [255, 0, 0]).all()


def test_episodic_life_ends_training_episodes_but_reports_the_raw_game_score():
    game = ScriptedGame(lives=3, frames_per_life=5, points=7.0)
    env = ClipRewardWrapper(EpisodicLifeWrapper(gym.wrappers.RecordEpisodeStatistics(game)))
    env.reset(seed=0)
    life_losses, training_rewards = 0, []
    while True:
        _, reward, terminated, truncated, info = env.step(0)
        training_rewards.append(reward)
        if "episode" in info:
            break
        if terminated:
            life_losses += 1
            env.reset()  # a soft reset: one no-op step, the game goes on
            assert game.num_resets == 1
    assert life_losses == 2 and terminated and not truncated
    assert set(training_rewards) == {1.0}
    # 15 frames in the whole game, 7 points each, soft-reset frames included, unclipped.
    assert info["episode"]["r"] == 15 * 7.0 and info["episode"]["l"] == 15
    env.reset()
    assert game.num_resets == 2 and game.frame == 0


def test_episodic_life_seeded_reset_is_a_real_reset():
    game = ScriptedGame(lives=3, frames_per_life=5)
    env = EpisodicLifeWrapper(game)
    env.reset(seed=0)
    for _ in range(5):
        _, _, terminated, _, _ = env.step(0)
    assert terminated and game.lives == 2
    env.reset(seed=0)
    assert game.num_resets == 2 and game.frame == 0 and env.lives == 3


# ---------------------------------------------------------------- full stack, real ALE games


def sb3_reference(env_id: str) -> gym.Env:
    """SB3's AtariWrapper with the same options; RecordEpisodeStatistics innermost, as its
    Monitor sits under AtariWrapper in make_atari_env."""
    raw = gym.wrappers.RecordEpisodeStatistics(gym.make(env_id))
    return AtariWrapper(
        raw, noop_max=30, frame_skip=4, screen_size=84, terminal_on_life_loss=True, clip_reward=True
    )


# Breakout has FIRE (FireResetWrapper in play); MsPacman has no FIRE. Both have lives, and random
# play loses a whole game well within the step budget (Breakout ~150 steps, MsPacman ~600).
@pytest.mark.parametrize("env_id", ["BreakoutNoFrameskip-v4", "MsPacmanNoFrameskip-v4"])
def test_matches_stable_baselines3_frame_for_frame(env_id: str):
    ours, reference = make_atari(env_id), sb3_reference(env_id)
    assert ours.action_space == reference.action_space
    rng = np.random.default_rng(12345)

    obs, _ = ours.reset(seed=7)
    ref_obs, _ = reference.reset(seed=7)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8 and ref_obs.shape == (84, 84, 1)
    np.testing.assert_array_equal(obs[-1], ref_obs[:, :, 0])

    num_steps, life_losses, game_overs, last_frames_differing = 3000, 0, 0, 0
    for step in range(num_steps):
        action = int(rng.integers(ours.action_space.n))
        obs, reward, terminated, truncated, info = ours.step(action)
        ref_obs, ref_reward, ref_terminated, ref_truncated, ref_info = reference.step(action)
        context = f"step {step}"
        assert reward == ref_reward, context
        assert (terminated, truncated) == (ref_terminated, ref_truncated), context
        assert ("episode" in info) == ("episode" in ref_info), context
        if "episode" in info:
            game_overs += 1
            assert terminated or truncated
            assert info["episode"]["r"] == ref_info["episode"]["r"], context
            assert info["episode"]["l"] == ref_info["episode"]["l"], context
            # Deliberate difference: a game that ends inside the frame skip gets the max of its
            # true last two frames from us, frames of the previous step from SB3.
            last_frames_differing += not np.array_equal(obs[-1], ref_obs[:, :, 0])
        else:
            np.testing.assert_array_equal(obs[-1], ref_obs[:, :, 0], err_msg=context)
            life_losses += terminated
        if terminated or truncated:
            obs, _ = ours.reset()
            ref_obs, _ = reference.reset()
            np.testing.assert_array_equal(obs[-1], ref_obs[:, :, 0], err_msg=f"reset after {context}")
    assert life_losses >= 3, "the run should cover lives lost"
    assert game_overs >= 2, "the run should cover real game overs"
    assert last_frames_differing <= game_overs
    ours.close()
    reference.close()


@pytest.mark.parametrize("env_id", ["BreakoutNoFrameskip-v4", "MsPacmanNoFrameskip-v4"])
def test_check_env_passes(env_id: str, monkeypatch: pytest.MonkeyPatch):
    # check_env also rebuilds the stack from env.spec in "human" render mode: keep SDL headless.
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    env = make_atari(env_id)
    check_env(env)
    # env.spec rebuilds the same stack: same seed, same observations.
    twin = env.spec.make()
    np.testing.assert_array_equal(env.reset(seed=3)[0], twin.reset(seed=3)[0])
    np.testing.assert_array_equal(env.step(3)[0], twin.step(3)[0])


def test_seeded_reset_after_a_life_loss_restarts_the_game():
    env = make_atari("BreakoutNoFrameskip-v4")
    first, _ = env.reset(seed=11)
    rng = np.random.default_rng(0)
    terminated = False
    while not terminated:
        _, _, terminated, _, info = env.step(int(rng.integers(4)))
    assert "episode" not in info  # a lost life, not the game over
    again, _ = env.reset(seed=11)
    np.testing.assert_array_equal(first, again)


def test_is_atari_and_make_atari_guards():
    assert is_atari("BreakoutNoFrameskip-v4") and is_atari("ALE/Pong-v5")
    assert not is_atari("CartPole-v1") and not is_atari("NoSuchGame-v0")
    with pytest.raises(ValueError):
        make_atari("CartPole-v1")
    with pytest.raises(ValueError):  # v5 already skips 4 frames itself
        make_atari("ALE/Breakout-v5", frame_skip=4)
    assert make_atari("ALE/Breakout-v5", frame_skip=1).observation_space.shape == (4, 84, 84)
