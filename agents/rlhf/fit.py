"""The supervised loops of RLHF (SFT, the reward model): Adam steps on a fresh batch each."""

from __future__ import annotations

from typing import Callable

import torch


def adam_fit(
    model: torch.nn.Module,
    batch_loss: Callable[[], torch.Tensor],
    steps: int,
    lr: float,
    max_grad_norm: float,
) -> list[float]:
    """`steps` Adam steps θ ← Adam(θ, ∇L) on L = batch_loss() (which draws its own batch), the
    gradient's global norm clipped to `max_grad_norm`; returns every step's loss."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses: list[float] = []
    for _ in range(steps):
        loss = batch_loss()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Clipping keeps one unlucky early batch from blowing up a freshly initialised model.
        torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        losses.append(loss.item())
    return losses
