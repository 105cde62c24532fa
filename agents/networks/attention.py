"""The blocks of a GPT-style causal transformer (Radford et al. 2019): multi-head attention and
the pre-LN block, with the K/V of each step returned for a KV cache."""

from __future__ import annotations

import math

import torch
from torch import nn


class CausalSelfAttention(nn.Module):
    """Multi-head attention softmax(Q·Kᵀ/√d_head, masked)·V with a fused QKV projection."""

    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [B, T, d] → q, k, v [B, H, T, d_head]."""
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        return q, k, v

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor
    ) -> torch.Tensor:
        """q [B, H, Tq, dh], k/v [B, H, Tk, dh], allowed (bool, broadcast to [B, H, Tq, Tk]) → [B, Tq, d]."""
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_head))
        weights = scores.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
        out = weights @ v
        b, _, t, _ = out.shape
        return self.proj(out.transpose(1, 2).reshape(b, t, -1))


class Block(nn.Module):
    """Pre-LN transformer block: x ← x + Attn(LN₁(x)); x ← x + MLP(LN₂(x))."""

    def __init__(self, d_model: int, n_heads: int, mlp_ratio: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(), nn.Linear(mlp_ratio * d_model, d_model)
        )

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Return the new x and this layer's (k, v) of x's positions.

        `past` = (k, v) of earlier positions, prepended to the keys/values (the KV-cache step).
        """
        q, k, v = self.attn.project(self.ln1(x))
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        x = x + self.attn.attend(q, keys, values, allowed)
        x = x + self.mlp(self.ln2(x))
        return x, (k, v)
