"""N envs in K worker processes, each stepping its share of the envs in turn (`env.num_workers`).

gymnasium's AsyncVectorEnv gives every env its own process: right for Atari, whose step costs a
millisecond, wrong for games that step in microseconds (MinAtar, classic control, grids), where
64 processes on 2 cores spend their time on pipe traffic and context switches, and SyncVectorEnv
leaves all but one core idle during a rollout. Here each of K workers holds a SyncVectorEnv of
about N / K envs (the first N mod K workers one more), so one pipe message per worker and step
carries all of its envs. The data is that of one SyncVectorEnv of N envs: env i is seeded with
seed + i and lands in column i, episodes end and restart in SAME_STEP autoreset mode.
"""

from __future__ import annotations

import multiprocessing
import traceback
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import batch_space

from envs.vector_infos import merge_infos


def shard_slices(num_envs: int, num_workers: int) -> list[slice]:
    """The envs of each worker: consecutive runs of ⌈N/K⌉ or ⌊N/K⌋ envs covering 0 … N − 1."""
    if not 1 <= num_workers <= num_envs:
        raise ValueError(f"num_workers must be between 1 and num_envs ({num_envs}), got {num_workers}")
    size, extra = divmod(num_envs, num_workers)
    slices, start = [], 0
    for worker in range(num_workers):
        stop = start + size + (worker < extra)
        slices.append(slice(start, stop))
        start = stop
    return slices


def _serve(pipe: Any, parent_end: Any, env_fns: Sequence[Callable[[], gym.Env]]) -> None:
    """A worker's loop: ("reset", (seed, options)), ("step", actions) or ("close", None) in; (True,
    result) out, or (False, (exception type, message, traceback)) once, after which it exits."""
    parent_end.close()
    envs = None
    try:
        envs = SyncVectorEnv(list(env_fns), autoreset_mode=AutoresetMode.SAME_STEP)
        pipe.send((True, None))  # built: the parent learns of a failing constructor here
        while True:
            command, payload = pipe.recv()
            if command == "reset":
                seed, options = payload
                pipe.send((True, envs.reset(seed=seed, options=options)))
            elif command == "step":
                pipe.send((True, envs.step(payload)))
            elif command == "close":
                break
            else:
                raise ValueError(f"unknown command {command!r}")
    except (KeyboardInterrupt, EOFError):  # the parent is gone or stopping: nothing to report to
        pass
    except Exception as exc:
        try:
            pipe.send((False, (type(exc), str(exc), traceback.format_exc())))
        except (BrokenPipeError, EOFError):
            pass
    finally:
        if envs is not None:
            envs.close()
        pipe.close()


CLOSE_TIMEOUT_S = 10.0  # how long close waits for a worker to close its envs before killing it


class ShardWorkerError(RuntimeError):
    """An exception of a worker that could not be raised again as its own type here."""


class ShardedVectorEnv(gym.vector.VectorEnv):
    """`env_fns` in `num_workers` processes (see the module docstring). Besides the VectorEnv
    methods: step_async / step_wait and reset_async / reset_wait, as AsyncVectorEnv, so that a
    collector can overlap two of them (envs/overlap.py); `processes` and `parent_pipes` (None
    once that worker has raised), and `worker_slices`, for fault reports (agents/run/faults.py)."""

    def __init__(self, env_fns: Sequence[Callable[[], gym.Env]], num_workers: int,
                 context: str | None = None) -> None:
        self.num_envs = len(env_fns)
        self.worker_slices = shard_slices(self.num_envs, num_workers)
        probe = env_fns[0]()  # the spaces, as AsyncVectorEnv learns them
        self.metadata = dict(probe.metadata)
        self.metadata["autoreset_mode"] = AutoresetMode.SAME_STEP
        self.render_mode = probe.render_mode
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        probe.close()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)

        ctx = multiprocessing.get_context(context)
        self.parent_pipes: list[Any] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for part in self.worker_slices:
            parent_end, child_end = ctx.Pipe()
            process = ctx.Process(target=_serve, args=(child_end, parent_end, list(env_fns[part])),
                                  name=f"ShardWorker<{part.start}-{part.stop - 1}>", daemon=True)
            process.start()
            child_end.close()
            self.parent_pipes.append(parent_end)
            self.processes.append(process)
        self._pending: str | None = None
        self._receive_all()  # every worker built its envs (or this raises what failed)

    def _receive_all(self) -> list[Any]:
        """Each worker's reply, in order; the first failure is raised after every reply is read,
        so that the pipes stay in step."""
        results, failure = [], None
        for worker, pipe in enumerate(self.parent_pipes):
            if pipe is None:
                raise ShardWorkerError(f"worker {worker} failed earlier")
            ok, result = pipe.recv()  # EOFError if the worker died
            if not ok:
                self.parent_pipes[worker] = None
                failure = failure or result
            results.append(result)
        if failure is not None:
            exc_type, message, _ = failure
            try:
                error = exc_type(message)
            except Exception:
                error = ShardWorkerError(f"{exc_type.__name__}: {message}")
            raise error
        return results

    def _send_all(self, command: str, payloads: Sequence[Any]) -> None:
        if self._pending is not None:
            raise gym.error.AlreadyPendingCallError(f"{self._pending} is still pending", self._pending)
        for worker, (pipe, payload) in enumerate(zip(self.parent_pipes, payloads)):
            if pipe is None:
                raise ShardWorkerError(f"worker {worker} failed earlier")
            pipe.send((command, payload))
        self._pending = command

    def reset_async(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        self._send_all("reset", [(None if seed is None else seed + part.start, options)
                                 for part in self.worker_slices])

    def reset_wait(self) -> tuple[np.ndarray, dict]:
        self._pending = None
        results = self._receive_all()
        observations, infos = zip(*results)
        return self._merge_observations(observations), self._merge_infos(infos)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict]:
        self.reset_async(seed=seed, options=options)
        return self.reset_wait()

    def step_async(self, actions: Any) -> None:
        actions = np.asarray(actions)
        self._send_all("step", [actions[part] for part in self.worker_slices])

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        self._pending = None
        results = self._receive_all()
        columns = list(zip(*results))
        obs = self._merge_observations(columns[0])
        rewards, terminated, truncated = (np.concatenate(column) for column in columns[1:4])
        return obs, rewards, terminated, truncated, self._merge_infos(columns[4])

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        self.step_async(actions)
        return self.step_wait()

    def _merge_observations(self, parts: Sequence[Any]) -> Any:
        if isinstance(parts[0], dict):  # Dict spaces batch as a dict of arrays
            return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
        return np.concatenate(parts)

    def _merge_infos(self, infos: Sequence[dict]) -> dict:
        return merge_infos([(info, part.stop - part.start) for info, part in zip(infos, self.worker_slices)])

    def close_extras(self, terminate: bool = False, **kwargs: Any) -> None:
        """Ask each worker to close its envs and wait for it; `terminate`: kill them instead."""
        for pipe in self.parent_pipes:
            if pipe is not None and not terminate:
                try:
                    pipe.send(("close", None))
                except (BrokenPipeError, OSError):
                    pass
        for process in self.processes:
            if not terminate:
                process.join(timeout=CLOSE_TIMEOUT_S)
            if process.is_alive():  # asked to, or stuck in an env's close
                process.terminate()
                process.join(timeout=CLOSE_TIMEOUT_S)
        for pipe in self.parent_pipes:
            if pipe is not None:
                pipe.close()
