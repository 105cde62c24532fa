"""What can stop a run midway, and how the trainer notices: stop signals, non-finite numbers, envs
that raise or die. The trainer turns each into a checkpoint (where one is safe to write) and one
line on stderr (train.py: exit 130/143 after SIGINT/SIGTERM, 1 after a failure).
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from contextlib import contextmanager
from typing import Any, Iterator

import gymnasium as gym
import torch
from gymnasium.vector import AsyncVectorEnv

from envs.overlap import OverlappedVectorEnv
from envs.shards import ShardedVectorEnv

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """SIGINT or SIGTERM stopped the run (after saving a checkpoint where one was due)."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.signum = signum


class StopRequested(Exception):
    """Raised at a safe point (between env steps, between updates) once a stop signal has arrived."""


class TrainingFailed(Exception):
    """The run cannot go on (non-finite numbers, a dead env); the message names what and where."""


class NonFiniteError(Exception):
    """A NaN or inf in a loss, gradient or parameter; `what` is e.g. "gradient in policy_head.weight"."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


class EnvFailure(Exception):
    """An env raised, or an env worker process died; the message names the env and the cause."""


# ---------------------------------------------------------------------------------- signals


class StopSignals:
    """While active, SIGINT and SIGTERM only record that a stop was asked for: the trainer checks
    `requested` at safe points (between env steps, after an update) and stops there. A second
    signal restores the previous handlers and delivers itself again, for a user who does not
    want to wait (Ctrl-C twice: KeyboardInterrupt, no checkpoint).

    Does nothing outside the main thread, where Python cannot install signal handlers.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            return
        self._restore()
        signal.raise_signal(signum)

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        self._restore()


@contextmanager
def stop_signals_ignored() -> Iterator[None]:
    """Processes started inside (env workers) inherit SIG_IGN for SIGINT and SIGTERM.

    A Ctrl-C in a terminal reaches the whole process group: without this, every worker would die
    of it at once and the trainer could not play the env steps it still needs to reach a safe
    point. The trainer closes its workers itself when it stops.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


# ------------------------------------------------------------------------- non-finite numbers


class FiniteChecks:
    """Stops training at the first non-finite loss or parameter after an update. Gradients are
    checked inside the update itself, before the step that would spread a NaN into every weight
    (agents/core/update.py: clip_gradients raises NonFiniteGradient); the learner reports it
    through the same NonFiniteError."""

    def __init__(self, agent: torch.nn.Module) -> None:
        self.agent = agent

    def check_update(self, metrics: dict[str, float]) -> None:
        """After an update: the minibatch losses (their mean is non-finite if any was) and the weights."""
        for name in ("loss", "policy_loss", "value_loss", "entropy"):
            value = torch.tensor(metrics.get(name, 0.0))
            if not torch.isfinite(value):
                raise NonFiniteError(f"loss ({name} = {float(value)})")
        parameters = list(self.agent.parameters())
        if not torch.isfinite(torch.nn.utils.get_total_norm(parameters)):
            for name, parameter in self.agent.named_parameters():
                if not torch.isfinite(parameter).all():
                    raise NonFiniteError(f"parameter {name}")


# ------------------------------------------------------------------------------------- envs


class GuardedEnv:
    """A vector env (or one env of a list) whose step and reset raise EnvFailure naming the env and
    what went wrong, instead of whatever the env or the worker pipe raised."""

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, env_id: str, index: int | None = None) -> None:
        self.env, self.env_id, self.index = env, env_id, index
        # gymnasium logs a failing worker's whole traceback (as warnings) before raising its
        # exception again here; the trainer's one `error:` line says it instead. Only the
        # parent side of an async env is silenced: a sync env's own warnings still show.
        self.quiet = bool(_worker_groups(env))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def step(self, actions: Any) -> Any:
        return self._guarded("step", actions)

    def reset(self, **kwargs: Any) -> Any:
        return self._guarded("reset", **kwargs)

    def step_group_async(self, group: int, actions: Any) -> None:  # envs/overlap.py
        return self._guarded("step_group_async", group, actions)

    def step_group_wait(self, group: int) -> Any:
        return self._guarded("step_group_wait", group)

    def _guarded(self, method: str, *args: Any, **kwargs: Any) -> Any:
        level = gym.logger.min_level
        if self.quiet:
            gym.logger.min_level = gym.logger.ERROR + 10
        try:
            return getattr(self.env, method)(*args, **kwargs)
        except Exception as exc:
            raise EnvFailure(describe_env_failure(self.env, self.env_id, self.index, exc)) from exc
        finally:
            gym.logger.min_level = level


def _worker_groups(env: Any) -> list[tuple[int, AsyncVectorEnv | ShardedVectorEnv]]:
    """(index of its first env, group) of each set of env worker processes behind `env`."""
    if isinstance(env, (AsyncVectorEnv, ShardedVectorEnv)):
        return [(0, env)]
    if isinstance(env, OverlappedVectorEnv):
        return [(part.start, group) for part, group in zip(env.group_slices, env.groups)]
    return []


def _workers(env: Any) -> list[tuple[str, Any, Any]]:
    """(name, process, parent pipe) of every env worker process behind `env`: "worker i" where
    worker i steps env i (AsyncVectorEnv), "worker k (envs a–b)" where it steps several."""
    workers, number = [], 0
    for first, group in _worker_groups(env):
        for index, (process, pipe) in enumerate(zip(group.processes, group.parent_pipes)):
            if isinstance(group, ShardedVectorEnv):
                part = group.worker_slices[index]
                name = f"worker {number} (envs {first + part.start}–{first + part.stop - 1})"
            else:
                name = f"worker {first + index}"
            workers.append((name, process, pipe))
            number += 1
    return workers


def _dead_worker(env: Any, wait: float = 1.0) -> tuple[str, int, int | None] | None:
    """(name, pid, exit code) of a worker that raised (its pipe is dropped) or died; a killed
    worker may close its pipe a moment before the kernel reports it dead, hence the short wait."""
    workers = _workers(env)
    for name, process, pipe in workers:
        if pipe is None:
            return name, process.pid, None
    deadline = time.monotonic() + wait
    while True:
        for name, process, _ in workers:
            if process.exitcode is not None:
                return name, process.pid, process.exitcode
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


def describe_env_failure(env: Any, env_id: str, index: int | None, exc: Exception) -> str:
    raised = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if _worker_groups(env):
        dead = _dead_worker(env)
        if dead is None:
            return f"env {env_id} (async workers) failed: {raised}"
        name, pid, exitcode = dead
        if exitcode is None:
            return f"env {env_id} {name} (pid {pid}) raised {raised}"
        if exitcode < 0:
            return f"env {env_id} {name} (pid {pid}) died: killed by {signal_name(-exitcode)}"
        return f"env {env_id} {name} (pid {pid}) died: exit status {exitcode}"
    where = f"env {env_id}" if index is None else f"env {env_id} #{index}"
    return f"{where} raised {raised}"


def close_envs(envs: gym.vector.VectorEnv | list[gym.Env], failed: bool) -> None:
    """Close the training envs; after a failure, terminate async workers instead of waiting for
    replies a dead worker will never send (gymnasium's close would wait for, or raise on, them)."""
    for env in envs if isinstance(envs, list) else [envs]:
        groups = _worker_groups(env)
        if failed and groups:
            for _, group in groups:
                if isinstance(group, AsyncVectorEnv):  # nothing pending is worth waiting for now
                    group._state = type(group._state).DEFAULT
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    try:
                        group.close(terminate=True)
                    except Exception:  # a broken pipe on the way out changes nothing: the run has failed
                        pass
            env.closed = True  # its workers are gone: a normal close would wait on their pipes
        else:
            env.close()
