"""Where a training run's time goes, per process: wall-clock timers around the trainer's phases.

    python -m bench.phases --config configs/breakout.yaml [train.py's overrides]
    torchrun --standalone --nproc_per_node=2 -m bench.phases --config configs/breakout.yaml [...]

Runs train.py (its own command line, its own run directory) with these calls timed; at the end
every process prints one line per phase: total seconds, calls, and seconds per update.

  collect        a rollout segment, env steps and forward passes included (SegmentCollector.collect)
  env step       the vector env's step, in the trainer's process (the wrapper every env gets)
  act            the policy's forward pass and sampling during rollouts (ActorCritic.act)
  update         one PPO update, all epochs (Learner.update)
  objective      a minibatch's forward pass and loss (update.minibatch_objective)
  backward       a minibatch's gradients into .grad (update.backpropagate; under torchrun with
                 the gradient buckets' sums, so it holds their rank wait)
  rank wait      waiting for a sum over the ranks to arrive (RankSum.wait)
  optimizer      Adam's step

The timers nest (collect holds env step and act; update the rest) and each costs about a
microsecond a call, small beside what they time here. The optimizer is timed by torch's global
optimizer step hooks, everything else by wrapping the function; all of it is undone when train.py
returns. Not timed: the two env groups of `env.vectorization: overlap` (env step reads 0), the
transformer's own `act` and GRPO's collector.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PhaseClock:
    """Total wall time and calls of each timed phase."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    @contextmanager
    def timing(self, owner: Any, attribute: str, phase: str) -> Iterator[None]:
        """owner.attribute timed as `phase` inside the block, restored after it."""
        original = owner.__dict__[attribute]
        if not inspect.isfunction(original):  # a staticmethod or classmethod would need rewrapping
            raise TypeError(f"{owner.__name__}.{attribute} is not a plain function")
        self.seconds.setdefault(phase, 0.0)
        self.calls.setdefault(phase, 0)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(phase, time.perf_counter() - start)

        setattr(owner, attribute, timed)
        try:
            yield
        finally:
            setattr(owner, attribute, original)

    @contextmanager
    def timing_optimizer_steps(self, phase: str) -> Iterator[None]:
        """Every optimizer.step() timed as `phase` inside the block, through torch's global step
        hooks (wrapping step itself would be undone under torch's own wrapper of it)."""
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        self.seconds.setdefault(phase, 0.0)
        self.calls.setdefault(phase, 0)
        started: list[float] = []
        handles = [
            register_optimizer_step_pre_hook(lambda *_: started.append(time.perf_counter())),
            register_optimizer_step_post_hook(
                lambda *_: self.add(phase, time.perf_counter() - started.pop())
            ),
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def add(self, phase: str, seconds: float) -> None:
        self.seconds[phase] += seconds
        self.calls[phase] += 1

    def report(self, label: str) -> str:
        updates = max(self.calls.get("update", 0), 1)
        lines = [f"{label}: {'phase':<12} {'seconds':>9} {'calls':>7} {'s/update':>9}"]
        for phase, seconds in self.seconds.items():
            lines.append(
                f"{label}: {phase:<12} {seconds:9.4f} {self.calls[phase]:7d} {seconds / updates:9.5f}"
            )
        return "\n".join(lines)


def wrapped_phases() -> list[tuple[Any, str, str]]:
    """(owner, attribute, phase) of every phase timed by wrapping a function."""
    from agents.core import update
    from agents.networks.actor_critic import ActorCritic
    from agents.run import distributed, faults, learner
    from agents.run.collectors import SegmentCollector

    return [
        (SegmentCollector, "collect", "collect"),
        (faults.GuardedEnv, "step", "env step"),
        (ActorCritic, "act", "act"),
        (learner.Learner, "update", "update"),
        (update, "minibatch_objective", "objective"),
        (update, "backpropagate", "backward"),
        (distributed.RankSum, "wait", "rank wait"),
    ]


def timed_phases(clock: PhaseClock) -> ExitStack:
    """Every phase of the module docstring timed by `clock`, until the stack closes."""
    stack = ExitStack()
    for owner, attribute, phase in wrapped_phases():
        stack.enter_context(clock.timing(owner, attribute, phase))
    stack.enter_context(clock.timing_optimizer_steps("optimizer"))
    return stack


def main(argv: list[str] | None = None, run: Callable[[list[str] | None], int] | None = None) -> int:
    if run is None:
        import train

        run = train.main
    clock = PhaseClock()
    with timed_phases(clock):
        status = run(argv)
    print(clock.report(f"rank {os.environ.get('RANK', '0')}"), file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
