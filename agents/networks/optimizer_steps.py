"""A process-wide count of optimizer.step() calls, for caches of values computed from weights.

Fused optimizers (Adam(fused=True)) update parameters without bumping their version counters, so
the transformer's KV cache also treats any optimizer step as a possible weight change. Global
because the optimizer may be anyone's (a user's, the SFT loop's); the hook is installed by the
first model that asks, not by importing a module.
"""

from __future__ import annotations

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

_steps = 0
_hook = None


def _count(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
    global _steps
    _steps += 1


def start_counting() -> None:
    """Install the counting hook (once per process)."""
    global _hook
    if _hook is None:
        _hook = register_optimizer_step_post_hook(_count)


def optimizer_steps() -> int:
    """optimizer.step() calls of every optimizer since start_counting()."""
    return _steps
