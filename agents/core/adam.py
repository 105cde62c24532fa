"""The PPO core's optimizer: torch's fused Adam with a shorter way into its kernel."""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch


class Adam(torch.optim.Adam):
    """torch.optim.Adam(fused=True), the same update bit for bit (tests/test_adam.py), with less
    Python around it.

    m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², θ ← θ − lr · m̂ / (√v̂ + ε) with m̂ = m / (1 − β₁ᵗ),
    v̂ = v / (1 − β₂ᵗ) (Kingma & Ba 2015), all parameters in one fused kernel.

    torch's step spends about 80 µs in Python around an 11 µs kernel for a 64-64 MLP's twelve
    tensors (options checked per group, tensors grouped by device and dtype, CUDA-graph and
    learning-rate-tensor handling), a twelfth of CartPole's whole update step. In the plain case
    (every parameter that has a gradient already has its state; no amsgrad, maximize,
    capturable, differentiable or gradient scaler) this step makes the two calls torch's makes,
    the step counts' increment and `_fused_adam_`, and nothing else. Any other case, the first
    step included (it creates the state), runs torch's own step. The state dict is torch's.

    The step counts' increment is one op: each parameter's "step" is a view of one tensor that holds
    them all (`_step_counter`). torch's `_foreach_add_` on twelve CPU scalars takes 30 µs, as long
    as the fused kernel itself.
    """

    def __init__(self, params: Any, **options: Any) -> None:
        super().__init__(params, **{**options, "fused": True})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        groups = [self._plain_group(group) for group in self.param_groups] if closure is None else [None]
        if any(group is None for group in groups):
            # torch's step itself, not its hooked wrapper: the hooks already ran around this call.
            return inspect.unwrap(torch.optim.Adam.step)(self, closure)
        for number, (params, states, group) in enumerate(groups):
            if not params:
                continue
            counter, steps = self._step_counter(number, states)
            counter.add_(1)
            beta1, beta2 = group["betas"]
            torch._fused_adam_(
                params, [p.grad for p in params], [state["exp_avg"] for state in states],
                [state["exp_avg_sq"] for state in states], [], steps, amsgrad=False, lr=group["lr"],
                beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                maximize=False, grad_scale=None, found_inf=None,
            )
        return None

    def _step_counter(self, number: int, states: list[dict]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the tensor whose elements are the "step" of `states`, those steps), for group `number`'s
        parameters that have gradients; made when that set of step tensors changes: a parameter
        skipped for a step, or a loaded state dict. Each state's "step" stays a tensor of its own
        for torch's step and the state dict; only its storage is shared."""
        counters = self.__dict__.setdefault("_step_counters", {})
        steps = [state["step"] for state in states]
        counter, views = counters.get(number, (None, []))
        if len(views) != len(steps) or any(view is not step for view, step in zip(views, steps)):
            counter = torch.stack(steps)
            for index, state in enumerate(states):
                state["step"] = counter[index]
            views = [state["step"] for state in states]
            counters[number] = counter, views
        return counter, views

    def _plain_group(self, group: dict) -> tuple[list[torch.Tensor], list[dict], dict] | None:
        """(parameters with gradients, their states, the group) when the short step applies."""
        options = ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")
        if any(group.get(option) for option in options) or isinstance(group["lr"], torch.Tensor):
            return None
        if not group.get("fused"):  # a loaded state dict of a non-fused Adam sets the group's own
            return None
        if getattr(self, "grad_scale", None) is not None or getattr(self, "found_inf", None) is not None:
            return None
        params = [p for p in group["params"] if p.grad is not None]
        states = [self.state.get(p) for p in params]
        if not all(states) or any(p.grad.is_sparse or torch.is_complex(p) for p in params):
            return None
        return params, states, group
