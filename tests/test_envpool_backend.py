"""Tests for envs/envpool_backend.py: envpool's Atari pool behind our SAME_STEP VectorEnv interface.

Checked against independent sources: our own make_atari stack (layout, and frame-for-frame play
where the two emulations are truly comparable), OpenCV's INTER_AREA resize, Breakout's own score
counter in the console RAM, and life counts.
"""

from __future__ import annotations

import cv2
import gymnasium as gym
import numpy as np
import pytest
import torch

envpool = pytest.importorskip("envpool")

from agents.config import config_from_dict  # noqa: E402
from agents.core.rollout import collect_rollout  # noqa: E402
from agents.core.storage import RolloutStorage  # noqa: E402
from agents.networks.actor_critic import ActorCritic  # noqa: E402
from envs.atari import make_atari  # noqa: E402
from envs.envpool_backend import envpool_task_id, make_envpool_vector_env  # noqa: E402
from envs.vector import finished_episodes, make_vector_env  # noqa: E402

GAME = "BreakoutNoFrameskip-v4"
BREAKOUT_LIVES = 5


def make(num_envs: int = 2, seed: int = 0, **kwargs):
    # One thread: the tests share two cores with other work.
    return make_envpool_vector_env(GAME, num_envs, seed, num_threads=1, **kwargs)


def tracking_actions(ram: np.ndarray, rng: np.random.Generator, noise: float = 0.3) -> np.ndarray:
    """Move the paddle (RAM byte 72) towards the ball (byte 99), with random actions mixed in:
    the ball then reaches the upper rows (4 and 7 points a brick) and lives are still lost."""
    paddle, ball = ram[:, 72].astype(int), ram[:, 99].astype(int)
    actions = np.where(ball > paddle + 8, 2, np.where(ball < paddle + 8, 3, 0))
    return np.where(rng.random(len(ram)) < noise, rng.integers(0, 4, len(ram)), actions)


def breakout_score(ram: np.ndarray) -> int:
    """Breakout's displayed score, BCD in RAM bytes 76 (hundreds) and 77 (tens, units)."""

    def bcd(byte: int) -> int:
        return (byte >> 4) * 10 + (byte & 0x0F)

    return 100 * bcd(int(ram[76])) + bcd(int(ram[77]))


# ------------------------------------------------------------------------------- ids, layout


def test_task_ids_and_unsupported_ids():
    assert envpool_task_id("BreakoutNoFrameskip-v4") == "Breakout-v5"
    assert envpool_task_id("MontezumaRevengeNoFrameskip-v4") == "MontezumaRevenge-v5"
    # sticky actions or a built-in frame skip, not Atari, not registered
    unsupported = ["ALE/Breakout-v5", "Breakout-v4", "BreakoutNoFrameskip-v0"]
    unsupported += ["CartPole-v1", "FooNoFrameskip-v4"]
    for env_id in unsupported:
        with pytest.raises(ValueError, match="NoFrameskip-v4"):
            make_envpool_vector_env(env_id, 2, 0)


def test_layout_equals_make_vector_env_atari_layout():
    config = config_from_dict({"env_id": GAME, "env": {"num_envs": 2, "vectorization": "sync"}})
    ours = make_vector_env(config)
    envs = make(num_envs=2)
    try:
        assert envs.single_observation_space == ours.single_observation_space
        assert envs.single_action_space == ours.single_action_space
        assert envs.observation_space == ours.observation_space
        assert envs.action_space == ours.action_space
        assert envs.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
        obs, _ = envs.reset(seed=0)
        our_obs, _ = ours.reset(seed=0)
        assert obs.shape == our_obs.shape == (2, 4, 84, 84) and obs.dtype == our_obs.dtype == np.uint8
        obs, reward, terminated, truncated, _ = envs.step(np.zeros(2, dtype=np.int64))
        _, our_reward, our_terminated, our_truncated, _ = ours.step(np.zeros(2, dtype=np.int64))
        assert (reward.dtype, terminated.dtype, truncated.dtype) == (
            our_reward.dtype,
            our_terminated.dtype,
            our_truncated.dtype,
        )
    finally:
        envs.close()
        ours.close()


# ------------------------------------------------------------------------------- SAME_STEP


def test_same_step_autoreset_after_lost_life_and_game_over():
    envs = make(num_envs=2)
    obs, info = envs.reset(seed=1)
    rng = np.random.default_rng(0)
    seen_life_loss = seen_game_over = False
    for _ in range(600):
        obs, _, terminated, truncated, info = envs.step(rng.integers(0, 4, 2))
        done = terminated | truncated
        if not done.any():
            assert "final_obs" not in info
            continue
        assert info["_final_obs"].tolist() == done.tolist()
        final_info = info["final_info"]
        for i in np.flatnonzero(done):
            final_obs = info["final_obs"][i]
            assert final_obs.shape == obs[i].shape and not np.array_equal(final_obs, obs[i])
            if final_info["lives"][i] > 0:  # a lost life: the same game goes on
                seen_life_loss = True
                assert terminated[i] and not final_info["game_over"][i]
                assert info["lives"][i] == final_info["lives"][i]
                # envpool keeps the frame stack over a lost life and pushes the new frame
                # (ours restarts it with 4 copies): see the module docstring.
                np.testing.assert_array_equal(obs[i][:-1], final_obs[1:])
            else:  # game over: obs[i] is the first observation of a new game
                seen_game_over = True
                assert final_info["game_over"][i]
                assert info["lives"][i] == BREAKOUT_LIVES
                assert all(np.array_equal(frame, obs[i][0]) for frame in obs[i])
        if seen_life_loss and seen_game_over:
            break
    envs.close()
    assert seen_life_loss and seen_game_over


def test_truncation_at_the_step_cap_restarts_the_game_and_reports_it():
    envs = make(num_envs=1, max_episode_steps=30, noop_max=1)
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    truncations = 0
    for _ in range(65):
        obs, _, terminated, truncated, info = envs.step(rng.integers(0, 4, 1))
        if truncated[0]:
            truncations += 1
            assert not terminated[0]
            assert info["final_info"]["_episode"][0] and info["final_info"]["lives"][0] > 0
            assert info["lives"][0] == BREAKOUT_LIVES  # a new game, not a soft reset
            assert not np.array_equal(info["final_obs"][0], obs[0])
    envs.close()
    assert truncations == 2


# ------------------------------------------------------------------------------- raw scores


def test_raw_game_scores_are_reported_once_at_game_over():
    num_envs, num_steps = 2, 2500
    envs = make(num_envs=num_envs)
    _, info = envs.reset(seed=0)
    rng = np.random.default_rng(0)
    raw_sum = np.zeros(num_envs)  # our own sum of unclipped rewards since the last game over
    steps = np.zeros(num_envs, dtype=int)
    lives_lost = np.zeros(num_envs, dtype=int)
    games: list[tuple[float, int]] = []
    large_rewards = 0
    for _ in range(num_steps):
        _, reward, terminated, truncated, info = envs.step(tracking_actions(info["ram"], rng))
        assert set(np.unique(reward)) <= {-1.0, 0.0, 1.0}  # training rewards are clipped
        done = terminated | truncated
        final_info = info.get("final_info", {})
        # The unclipped reward of this step: in final_info for envs that just finished.
        raw = np.where(done, final_info.get("raw_reward", 0.0), info["raw_reward"])
        np.testing.assert_array_equal(reward, np.sign(raw))
        large_rewards += int((raw > 1).sum())
        raw_sum += raw
        steps += 1
        assert not truncated.any()
        lives_lost += terminated
        reported = finished_episodes(info)
        game_over_envs = np.flatnonzero(final_info.get("_episode", np.zeros(num_envs, bool)))
        assert len(reported) == len(game_over_envs)
        for i, (score, length) in zip(game_over_envs, reported):
            # At game over only: the fifth lost life of this game, none left.
            assert terminated[i] and final_info["lives"][i] == 0 and lives_lost[i] == BREAKOUT_LIVES
            assert score == raw_sum[i] == breakout_score(final_info["ram"][i])
            assert length == 4 * steps[i]  # emulator frames at frame skip 4
            games.append((score, length))
            raw_sum[i], steps[i], lives_lost[i] = 0.0, 0, 0
    envs.close()
    assert len(games) >= 4 and max(score for score, _ in games) > BREAKOUT_LIVES
    assert large_rewards > 0  # bricks worth 4 or 7 were hit: the scores are really unclipped


# ------------------------------------------------------------------------------- seeding


def play(envs, seed: int, num_steps: int = 120) -> list[bytes]:
    obs, info = envs.reset(seed=seed)
    trace = [obs.tobytes(), info["ram"].tobytes()]
    actions = np.random.default_rng(0).integers(0, 4, (num_steps, envs.num_envs))
    for action in actions:
        obs, reward, terminated, _, info = envs.step(action)
        trace += [obs.tobytes(), reward.tobytes(), terminated.tobytes(), info["ram"].tobytes()]
    return trace


def test_seeded_reset_is_reproducible():
    envs = make(num_envs=2, seed=3)
    first = play(envs, seed=3)
    assert play(envs, seed=3) == first  # the same pool, played again from a seeded reset
    assert play(envs, seed=4) != first  # another seed: other no-op starts
    envs.close()
    fresh = make(num_envs=2, seed=7)
    assert play(fresh, seed=3) == first  # a pool built with another seed, reset with seed 3
    fresh.close()


# ------------------------------------------------------------------------------- frames


def test_resize_is_cv2_inter_area_of_envpool_own_full_frame():
    """Two pools with one seed play one game; the 84x84 one must show INTER_AREA of the other's
    full 210x160 gray frame (INTER_LINEAR would not match)."""
    settings = dict(env_type="gymnasium", num_envs=1, num_threads=1, seed=0, stack_num=1, noop_max=1)
    full = envpool.make("Breakout-v5", img_height=210, img_width=160, **settings)
    small = envpool.make("Breakout-v5", **settings)
    full_obs, _ = full.reset()
    small_obs, _ = small.reset()
    rng = np.random.default_rng(0)
    linear_differs = False
    for _ in range(60):
        frame = full_obs[0, 0]
        area = cv2.resize(frame, (84, 84), interpolation=cv2.INTER_AREA)
        np.testing.assert_array_equal(small_obs[0, 0], area)
        linear = cv2.resize(frame, (84, 84), interpolation=cv2.INTER_LINEAR)
        linear_differs |= not np.array_equal(small_obs[0, 0], linear)
        action = rng.integers(0, 4, 1)
        full_obs, *_ = full.step(action)
        small_obs, *_ = small.step(action)
    full.close()
    small.close()
    assert linear_differs


def test_first_life_plays_frame_for_frame_like_make_atari():
    """Comparable only where both take the same emulator frames: noop_max=1 without FIRE reset
    is exactly one no-op frame after reset_game in both stacks (Breakout's emulation does not
    depend on the seed without sticky actions). With FIRE reset the starts differ (envpool: one
    FIRE frame; ours: FIRE and RIGHT as two 4-frame steps), and after the first lost life the
    restarts differ (see the module docstring), so the comparison stops there."""
    envs = make(num_envs=1, seed=5, noop_max=1, fire_reset=False, clip_reward=False)
    ours = make_atari(GAME, noop_max=1, fire_reset=False, clip_reward=False)
    obs, _ = envs.reset(seed=5)
    our_obs, _ = ours.reset(seed=11)
    np.testing.assert_array_equal(obs[0], our_obs)
    rng = np.random.default_rng(0)
    for step in range(1, 400):
        action = int(rng.integers(0, 4))
        obs, reward, terminated, truncated, info = envs.step(np.array([action]))
        our_obs, our_reward, our_terminated, our_truncated, our_info = ours.step(action)
        done = terminated[0] or truncated[0]
        seen = info["final_obs"][0] if done else obs[0]
        np.testing.assert_array_equal(seen, our_obs, err_msg=f"step {step}")
        assert (reward[0], terminated[0], truncated[0]) == (our_reward, our_terminated, our_truncated)
        if done:
            assert info["final_info"]["lives"][0] == our_info["lives"] == BREAKOUT_LIVES - 1
            break
    envs.close()
    ours.close()
    assert done and step > 50  # a whole life, not a trivial prefix


def test_fire_reset_start_differs_from_make_atari():
    """Pins a documented difference: envpool's FIRE reset is one FIRE frame, ours FIRE + RIGHT
    as two agent steps, so the first observations differ."""
    envs = make(num_envs=1, noop_max=1)
    ours = make_atari(GAME, noop_max=1)
    obs, _ = envs.reset(seed=0)
    our_obs, _ = ours.reset(seed=0)
    assert not np.array_equal(obs[0], our_obs)
    envs.close()
    ours.close()


# ------------------------------------------------------------------------------- rollout loop


class UniformAgent(ActorCritic):
    """Uniform policy over Breakout's 4 actions; V(s) = mean pixel, so bootstraps are readable."""

    def forward(self, obs):
        return torch.zeros(obs.shape[0], 4), obs.float().mean(dim=(1, 2, 3))


def test_collect_rollout_consumes_it_unchanged():
    envs = make(num_envs=2, max_episode_steps=20)
    obs, _ = envs.reset(seed=0)
    storage = RolloutStorage(48, 2, (4, 84, 84), torch.uint8, torch.device("cpu"))
    episodes: list[tuple[float, int]] = []
    torch.manual_seed(0)
    record = lambda infos: episodes.extend(finished_episodes(infos))  # noqa: E731
    collect_rollout(UniformAgent(), envs, storage, torch.as_tensor(obs), record)
    envs.close()
    truncated = storage.truncated.bool() & ~storage.terminated.bool()
    assert truncated.any() and len(episodes) >= 2
    # Truncated steps bootstrap from V(real final obs), a nonzero mean pixel.
    assert (storage.final_values[truncated] > 0).all()
    assert (storage.final_values[~truncated] == 0).all()
