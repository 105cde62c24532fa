"""Atari games run by envpool (C++ emulators and preprocessing in threads) behind this toolkit's
vector-env interface: gymnasium SAME_STEP autoreset and raw-score episode statistics.

`make_envpool_vector_env("BreakoutNoFrameskip-v4", ...)` takes the arguments of
`envs.atari.make_atari` and returns an `EnvpoolAtariVectorEnv`, a `gymnasium.vector.VectorEnv`
that agents/core/rollout.py and envs/vector.py `finished_episodes` consume unchanged:

- observations: uint8 (frame_stack * channels, screen_size, screen_size), oldest frame first,
  the same layout as make_atari;
- rewards: float64, sign-clipped with clip_reward; terminated is True at a lost life with
  terminal_on_life_loss;
- SAME_STEP autoreset: when env i's episode ends, obs[i] is already its next episode's first
  observation, infos["final_obs"][i] (mask infos["_final_obs"]) the real last one and
  infos["final_info"] the info of that last step;
- infos["final_info"]["episode"] = {"r", "l", "t"} (mask ["_episode"]) only at a real game over
  (or the step cap): "r" is the raw, unclipped score of the whole game, all lives;
- per-step infos (each with its "_key" mask): "lives", "raw_reward" (unclipped reward of this
  step), "game_over" (the emulator's game over, not a lost life), "ram" (the console's 128 bytes).

Where envpool's game differs from make_atari's wrapper stack (envs/atari_wrappers.py), measured
on Breakout with envpool 1.2.5 and ale-py 0.12.1 (tests/test_envpool_backend.py pins the
measurable ones); items marked [source] come from reading envpool's atari_env.h (the wheel ships
no C++ source; the stored version read may be older than 1.2.5) and agree with what we observe:

Identical:
- Emulation, minimal action set, rewards, life counts: with fire_reset=False and noop_max=1 the
  first life plays frame for frame, reward for reward, identically to make_atari.
- Resize: envpool's 84x84 frame equals cv2.resize(INTER_AREA) of its own 210x160 frame exactly
  (use_inter_area_resize=True; False would give bilinear). Grayscale: ALE's gray palette equals
  cv2.COLOR_RGB2GRAY on every Breakout frame checked.
- Step cap: envpool truncates at max_episode_steps agent steps; we pass the gym id's
  max_num_frames_per_episode / frame_skip (108000 / 4 = 27000, also envpool's default), so both
  stop a game after about 108000 emulator frames. ALE counts every frame since reset_game;
  envpool counts agent steps and leaves out its reset no-ops (at the start and, [source], after
  each lost life), so its cap comes a little later: at most noop_max frames per life.

Different:
- Reset no-ops: ours take 1..noop_max no-op frames, then (fire_reset) FIRE and RIGHT as two
  full agent steps (2 * frame_skip frames). [source] Envpool takes 1..noop_max frames in all,
  the last of them a single FIRE frame on FIRE games (0..noop_max-1 no-ops + 1 FIRE), and no
  second action. The reset frames differ from ours on FIRE games (tested); without FIRE reset and
  with noop_max=1 both take exactly one no-op frame and match (tested).
- noop_max=0 (ours: no random start) crashes envpool (segfault), so it is passed as 1: on FIRE
  games that is 0 no-ops + FIRE (a fixed start), on the others exactly 1 no-op frame.
- Random starts use envpool's own C++ generator: the same seed gives different no-op counts
  than ours. envpool seeds env i with seed + i, as gymnasium does.
- After a lost life (terminal_on_life_loss): ours takes one no-op agent step, then FIRE and
  RIGHT; [source] envpool takes another random 0..noop_max-1 no-op frames and one FIRE frame.
  Ours restarts the frame stack (4 copies of the new frame); envpool keeps the last life's
  frames and pushes only the new one (tested). After a game over both restart the stack.
- [source] The reset frame is one raw frame in envpool; ours (with fire_reset) is the max of the
  last two frames of the RIGHT step.
- Flicker max and grayscale: envpool converts each frame to gray and then takes the max of the
  last two; ours takes the channel-wise max of RGB frames and then converts. The two agree
  where the frames agree in colour (everywhere in Breakout's first life); they can differ by a
  few gray levels where two different colours overlap.
- [source] A game over within the first two frames of a skip: envpool's final observation is
  then a frame left from the previous step, not the max of the true last two. Training never
  reads it (a game over is a termination: no bootstrap); only final_obs shows it.
- episode "l" counts emulator frames like ours, as frame_skip x agent steps: it leaves out the
  reset no-op/FIRE frames (unknown to us) and counts a game's last, possibly cut-short step in
  full. "r" sums envpool's unclipped per-step rewards; rewards during reset no-ops (zero in
  practice) are not seen. Ours counts both exactly.
- Seeds: envpool fixes seeds when the pool is built, so reset(seed=s) builds a new pool with
  seed s (the ROMs load again: about 0.4 s for 2 envs on the busy 2-core machine). A seeded
  reset is always a real reset (new games), like our EpisodicLifeWrapper rule.
- Only `<Game>NoFrameskip-v4` ids are accepted (frame skip 1, no sticky actions, the setting of
  make_atari); envpool runs them as `<Game>-v5` with repeat_action_probability=0.
"""

from __future__ import annotations

import os
import re
import time
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs.atari import is_atari

_NO_FRAMESKIP_ID = re.compile(r"^(?P<game>[A-Za-z0-9]+)NoFrameskip-v4$")
_DEFAULT_FRAMES_PER_GAME = 108_000  # ALE's cap for the v4/v5 ids: 30 minutes at 60 Hz


def envpool_task_id(env_id: str) -> str:
    """`BreakoutNoFrameskip-v4` -> `Breakout-v5`, the envpool task that runs the same ROM; raise
    ValueError for ids envpool cannot run with make_atari's semantics."""
    match = _NO_FRAMESKIP_ID.match(env_id)
    if match is None or not is_atari(env_id):
        raise ValueError(
            f"the envpool backend runs ALE games given as '<Game>NoFrameskip-v4' "
            f"(frame skip 1, no sticky actions), e.g. 'BreakoutNoFrameskip-v4'; got {env_id!r}"
        )
    import envpool

    task_id = f"{match['game']}-v5"
    if task_id not in envpool.list_all_envs():
        raise ValueError(f"envpool {envpool.__version__} has no Atari task {task_id!r} (for {env_id!r})")
    return task_id


class EnvpoolAtariVectorEnv(gym.vector.VectorEnv):
    """An envpool Atari pool in sync mode, seen as a gymnasium VectorEnv in SAME_STEP autoreset
    mode with raw-score episode statistics. See the module docstring for the semantics."""

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, task_id: str, num_envs: int, seed: int, frame_skip: int, **pool_kwargs: Any) -> None:
        self._task_id = task_id
        self._pool_kwargs = dict(pool_kwargs, num_envs=num_envs, batch_size=num_envs, frame_skip=frame_skip)
        self._frame_skip = frame_skip
        self._episodic_life = bool(pool_kwargs["episodic_life"])
        self.num_envs = num_envs
        self._pool = self._make_pool(seed)
        self._pool_untouched = True  # a seeded first reset with the same seed need not rebuild it
        self._pool_seed: int | list[int] = seed

        observation_space = self._pool.observation_space
        action_space = self._pool.action_space
        self.single_observation_space = spaces.Box(0, 255, observation_space.shape, np.uint8)
        self.single_action_space = spaces.Discrete(int(action_space.n))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)

        self._episode_return = np.zeros(num_envs, dtype=np.float64)
        self._episode_steps = np.zeros(num_envs, dtype=np.int64)
        self._episode_start = np.zeros(num_envs, dtype=np.float64)
        self._needs_reset = True

    def _make_pool(self, seed: int | list[int]) -> Any:
        import envpool

        seeds = {"seed": seed} if isinstance(seed, int) else {"seed": int(seed[0]), "env_seed": list(seed)}
        return envpool.make(self._task_id, env_type="gymnasium", **self._pool_kwargs, **seeds)

    # ------------------------------------------------------------------ gymnasium VectorEnv API

    def reset(
        self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new game in every env. A seed rebuilds the pool (envpool fixes seeds at
        construction): env i then plays with seed + i, or seed[i] for a list."""
        if options:
            raise ValueError(f"EnvpoolAtariVectorEnv.reset takes no options, got {options}")
        if seed is not None:
            if isinstance(seed, (list, tuple)) and len(seed) != self.num_envs:
                raise ValueError(f"reset needs {self.num_envs} seeds, got {len(seed)}")
            seed = int(seed) if isinstance(seed, (int, np.integer)) else [int(s) for s in seed]
            if not (self._pool_untouched and seed == self._pool_seed):
                self._pool.close()
                self._pool = self._make_pool(seed)
                self._pool_seed = seed
        self._pool_untouched = False
        # An explicit envpool reset is a real one (new game) even after a lost life.
        obs, pool_info = self._pool.reset()
        order = np.argsort(pool_info["env_id"])
        now = time.perf_counter()
        self._episode_return[:] = 0.0
        self._episode_steps[:] = 0
        self._episode_start[:] = now
        self._needs_reset = False
        return obs[order], self._vector_info(pool_info, order)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        if self._needs_reset:
            raise gym.error.ResetNeeded("Call reset() before step().")
        actions = np.asarray(actions)
        obs, reward, terminated, truncated, pool_info = self._pool.step(actions.astype(np.int32))
        order = np.argsort(pool_info["env_id"])
        obs, reward = obs[order], reward[order].astype(np.float64)
        terminated, truncated = terminated[order].astype(bool), truncated[order].astype(bool)
        infos = self._vector_info(pool_info, order)

        self._episode_return += infos["raw_reward"]
        self._episode_steps += 1
        done = np.flatnonzero(terminated | truncated)
        if done.size == 0:
            return obs, reward, terminated, truncated, infos

        # Without episodic_life every end is a game end; with it, only the emulator's game over
        # or the step cap (after which envpool restarts the game) end a game.
        game_ends = truncated[done] | infos["game_over"][done] | (not self._episodic_life)
        final_obs = np.full(self.num_envs, None, dtype=object)
        final_mask = np.zeros(self.num_envs, dtype=bool)
        final_info: dict[str, Any] = {}
        now = time.perf_counter()
        for i, game_end in zip(done, game_ends):
            final_obs[i], final_mask[i] = obs[i].copy(), True  # obs[i] is overwritten below
            step_info = _one_env_info(infos, i)
            if game_end:
                step_info["episode"] = {
                    "r": float(self._episode_return[i]),
                    "l": int(self._episode_steps[i]) * self._frame_skip,
                    "t": round(now - self._episode_start[i], 6),
                }
                self._episode_return[i] = 0.0
                self._episode_steps[i] = 0
                self._episode_start[i] = now
            final_info = self._add_info(final_info, step_info, i)

        # SAME_STEP: step the finished envs once more at once. Stepping a done env makes envpool
        # run its own autoreset (action ignored): a soft reset after a lost life, a new game
        # after a game over. An explicit pool.reset(env_id) would always start a new game.
        reset_obs, _, _, _, reset_pool_info = self._pool.step(
            np.zeros(done.size, dtype=np.int32), done.astype(np.int32)
        )
        reset_order = np.argsort(reset_pool_info["env_id"])
        reset_info = self._vector_info(reset_pool_info, reset_order)
        ids = reset_pool_info["env_id"][reset_order]
        obs[ids] = reset_obs[reset_order]
        for key in _STEP_INFO_KEYS:
            infos[key][ids] = reset_info[key]
        infos["final_obs"], infos["_final_obs"] = final_obs, final_mask
        infos["final_info"], infos["_final_info"] = final_info, final_mask.copy()
        return obs, reward, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        self._pool.close()

    def _vector_info(self, pool_info: dict[str, Any], order: np.ndarray) -> dict[str, Any]:
        """envpool's info (rows in env_id order) under our names, each with an all-true mask."""
        info = {
            "lives": np.asarray(pool_info["lives"])[order],
            "raw_reward": np.asarray(pool_info["reward"], dtype=np.float64)[order],
            "game_over": np.asarray(pool_info["terminated"])[order].astype(bool),
            "ram": np.asarray(pool_info["ram"])[order],
        }
        rows = len(order)
        for key in _STEP_INFO_KEYS:
            info[f"_{key}"] = np.ones(rows, dtype=bool)
        return info


_STEP_INFO_KEYS = ("lives", "raw_reward", "game_over", "ram")


def _one_env_info(infos: dict[str, Any], i: int) -> dict[str, Any]:
    # Python scalars, so that VectorEnv._add_info batches them into typed arrays, as
    # gymnasium's own vector envs do with a single env's info.
    return {
        "lives": int(infos["lives"][i]),
        "raw_reward": float(infos["raw_reward"][i]),
        "game_over": bool(infos["game_over"][i]),
        "ram": infos["ram"][i].copy(),
    }


def make_envpool_vector_env(
    env_id: str,
    num_envs: int,
    seed: int,
    noop_max: int = 30,
    frame_skip: int = 4,
    terminal_on_life_loss: bool = True,
    fire_reset: bool = True,
    clip_reward: bool = True,
    screen_size: int = 84,
    grayscale: bool = True,
    frame_stack: int = 4,
    num_threads: int | None = None,
    max_episode_steps: int | None = None,
) -> EnvpoolAtariVectorEnv:
    """`num_envs` copies of `env_id` (a `<Game>NoFrameskip-v4` id) preprocessed inside envpool
    like envs.atari.make_atari with the same arguments, as a SAME_STEP gymnasium VectorEnv.

    num_threads: envpool worker threads; default min(num_envs, usable cores). Each runs whole
    env steps, so more threads than free cores only adds contention with the learner.
    max_episode_steps: agent steps after which a game is truncated; default the gym id's
    max_num_frames_per_episode / frame_skip (27000 for the v4 ids at frame skip 4).
    Raises ValueError for ids or settings envpool cannot run.
    """
    task_id = envpool_task_id(env_id)
    if num_envs < 1:
        raise ValueError(f"num_envs must be at least 1, got {num_envs}")
    sizes = {"frame_skip": frame_skip, "screen_size": screen_size, "frame_stack": frame_stack}
    for name, value in sizes.items():
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if noop_max < 0:
        raise ValueError(f"noop_max must be at least 0, got {noop_max}")
    if num_threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        num_threads = min(num_envs, cores)
    if max_episode_steps is None:
        frames_per_game = gym.spec(env_id).kwargs.get("max_num_frames_per_episode", _DEFAULT_FRAMES_PER_GAME)
        max_episode_steps = -(-frames_per_game // frame_skip)
    if max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be at least 1, got {max_episode_steps}")
    return EnvpoolAtariVectorEnv(
        task_id,
        num_envs,
        seed,
        frame_skip=frame_skip,
        num_threads=num_threads,
        max_episode_steps=max_episode_steps,
        noop_max=max(noop_max, 1),  # envpool crashes on 0; 1 is its fixed start (see module doc)
        episodic_life=terminal_on_life_loss,
        use_fire_reset=fire_reset,
        reward_clip=clip_reward,
        img_height=screen_size,
        img_width=screen_size,
        gray_scale=grayscale,
        stack_num=frame_stack,
        repeat_action_probability=0.0,
        full_action_space=False,
        use_inter_area_resize=True,
    )
