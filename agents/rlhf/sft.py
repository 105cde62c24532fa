"""Supervised fine-tuning (SFT): the warm start of a token policy from task demonstrations.

Minimising the cross-entropy of the demonstrated completions,
    L(θ) = −E_{x~D} [ (1/|y|) Σ_t log π_θ(y_t | x, y_<t) ],   x = prompt, y = completion + EOS,
is minimising the forward KL(P_data ‖ π_θ) = −H(P_data) + cross-entropy: mean-seeking, the policy
spreads its mass over everything the data does (RL with a KL penalty later minimises a reverse
KL instead and concentrates on high-reward modes).

The loss covers the completion tokens only (EOS included), not the prompt: the env samples
prompts itself, the policy never generates them, so modelling them would spend capacity on
tokens it is never asked for (for DigitSort, on the distribution of random prompt digits).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from agents.networks.transformer import TransformerActorCritic
from agents.rlhf.fit import adam_fit
from agents.rlhf.token_rows import pad_rows, span_mask
from envs.token_tasks import TokenTask


def demonstration_batch(
    task: TokenTask, batch_size: int, rng: np.random.Generator, max_len: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """`batch_size` demonstrations as right-padded tokens [B, L] and a target mask [B, L].

    mask[i, t] is True where token t of row i is a completion token (the target predicted from
    position t − 1). Sequences longer than `max_len` (the model's context) are cut to it.
    """
    sequences = [task.demonstration(rng)[:max_len] for _ in range(batch_size)]
    tokens = pad_rows(sequences)
    return tokens, span_mask(sequences, [task.prompt_length(s) for s in sequences], tokens.shape[1])


def completion_cross_entropy(
    model: TransformerActorCritic, tokens: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Mean over completion tokens of −log π(y_t | y_<t): position t − 1 predicts token t."""
    logits, _ = model.sequence_logits_and_values(tokens[:, :-1])
    targets, weights = tokens[:, 1:], mask[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return (nll * weights.reshape(-1)).sum() / weights.sum()


@torch.no_grad()
def evaluate_cross_entropy(
    model: TransformerActorCritic, task: TokenTask, num_sequences: int = 256, seed: int = 12345
) -> float:
    """Completion cross-entropy (nats per token) on fresh demonstrations, for before/after checks."""
    tokens, mask = demonstration_batch(task, num_sequences, np.random.default_rng(seed), model.max_len)
    device = next(model.parameters()).device
    return float(completion_cross_entropy(model, tokens.to(device), mask.to(device)))


def sft_train(
    model: TransformerActorCritic,
    task: TokenTask,
    steps: int = 500,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int | np.random.Generator = 0,
    device: str | torch.device | None = None,
    max_grad_norm: float = 1.0,
) -> dict[str, float | Sequence[float]]:
    """Train `model` with Adam on L(θ) (module docstring), one fresh demonstration batch per step.

    Returns {"loss": last batch loss, "initial_loss": first batch loss, "losses": every step}.
    Only the trunk and LM head learn (the value head has no target here).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()

    def batch_loss() -> torch.Tensor:
        tokens, mask = demonstration_batch(task, batch_size, rng, model.max_len)
        return completion_cross_entropy(model, tokens.to(device), mask.to(device))

    losses = adam_fit(model, batch_loss, steps, lr, max_grad_norm)
    model.reset_cache()  # the weights changed (act would notice anyway; this frees the memory)
    return {
        "loss": losses[-1] if losses else float("nan"),
        "initial_loss": losses[0] if losses else float("nan"),
        "losses": losses,
    }
