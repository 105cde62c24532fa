"""A process-wide count of optimizer.step() calls, and the weight fingerprint built on it, for caches
of values computed from weights (the transformer's KV cache, a network's low-precision copy).

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


def parameter_fingerprint(module: torch.nn.Module) -> tuple:
    """What changes whenever `module`'s weights may have: in-place updates (load_state_dict, copy_,
    non-fused optimizers) bump a parameter's version counter, `.to()` moves its storage, and any
    optimizer.step() bumps optimizer_steps() (call start_counting() first). Only writes that go
    around autograd's bookkeeping (through `p.data`, or a collective into the storage) escape all
    three: the cache's owner must be told of those."""
    return (optimizer_steps(), tuple((p.data_ptr(), p._version) for p in module.parameters()))
