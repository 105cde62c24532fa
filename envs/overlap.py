"""Two halves of a vector env in worker processes, so that one half steps while the policy picks the
other half's actions (`env.vectorization: overlap`).

In a plain rollout the learner process waits while the env workers step, and the workers wait while
it runs the policy. Split into two groups A and B, the steps of A run during the forward pass for B
and the other way round (agents/core/rollout.py, collect_rollout_overlapped): on a machine where
neither side fills the cores alone, the idle time of each hides the other's work. The data is
the same as one vector env of N envs: env i is seeded with seed + i and lands in column i.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode
from gymnasium.vector.utils import batch_space

from envs.shards import ShardedVectorEnv
from envs.vector_infos import merge_infos


class OverlappedVectorEnv(gym.vector.VectorEnv):
    """N envs as two groups (the first ⌈N/2⌉ envs, then the rest), in SAME_STEP autoreset mode:
    AsyncVectorEnvs (a process per env), or with `num_workers` K ≥ 2 ShardedVectorEnvs of ⌈K/2⌉
    and ⌊K/2⌋ processes (envs/shards.py). `step` and `reset` act on all N like any vector env; a
    collector that overlaps calls step_group_async(g, actions) / step_group_wait(g) on
    `group_slices[g]` instead."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], num_workers: int = 0) -> None:
        if len(env_fns) < 2:
            raise ValueError("an overlapped vector env needs at least 2 envs")
        if num_workers == 1:
            raise ValueError("an overlapped vector env needs num_workers 0 (one per env) or >= 2")
        half = (len(env_fns) + 1) // 2
        self.group_slices = [slice(0, half), slice(half, len(env_fns))]
        self.groups: list[AsyncVectorEnv | ShardedVectorEnv] = []
        for part, workers in zip(self.group_slices, ((num_workers + 1) // 2, num_workers // 2)):
            fns = list(env_fns[part])
            self.groups.append(ShardedVectorEnv(fns, min(workers, len(fns))) if num_workers
                               else AsyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP))
        first = self.groups[0]
        self.num_envs = len(env_fns)
        self.metadata = dict(first.metadata)
        self.render_mode = first.render_mode
        self.single_observation_space = first.single_observation_space
        self.single_action_space = first.single_action_space
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        for part, group in zip(self.group_slices, self.groups):
            group.reset_async(seed=None if seed is None else seed + part.start, options=options)
        results = [group.reset_wait() for group in self.groups]
        return (
            np.concatenate([obs for obs, _ in results]),
            merge_infos([(info, group.num_envs) for (_, info), group in zip(results, self.groups)]),
        )

    def step_group_async(self, group: int, actions: Any) -> None:
        self.groups[group].step_async(actions)

    def step_group_wait(self, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        return self.groups[group].step_wait()

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        for group, part in enumerate(self.group_slices):
            self.step_group_async(group, actions[part])
        results = [self.step_group_wait(group) for group in range(len(self.groups))]
        obs, rewards, terminated, truncated = (np.concatenate(column) for column in list(zip(*results))[:4])
        infos = merge_infos([(result[4], group.num_envs) for result, group in zip(results, self.groups)])
        return obs, rewards, terminated, truncated, infos

    def close_extras(self, **kwargs: Any) -> None:
        errors = []
        for group in self.groups:  # each in turn, so that one failing does not leave the other open
            try:
                group.close(**kwargs)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
