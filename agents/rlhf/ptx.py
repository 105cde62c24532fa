"""The PPO-ptx term (InstructGPT, Ouyang et al. 2022, arXiv 2203.02155).

objective(φ) = E_{(x,y)~π_φ}[ r_θ(x,y) − β·log(π_φ(y|x)/π_SFT(y|x)) ] + γ_ptx·E_{x~D}[ log π_φ(x) ]

PPO minimises a loss, so the second term enters it as L_ptx = −γ_ptx · LL, with
LL = the mean log-likelihood per completion token of a corpus batch under the current policy,
i.e. L_ptx = γ_ptx · (the SFT cross-entropy of `agents.rlhf.sft.completion_cross_entropy`). The
likelihood covers completion tokens (and EOS) only, as in the SFT stage: the env samples prompts
itself and the policy never generates them, so the ptx term keeps exactly what SFT taught.

Mixed into every PPO minibatch step (a fresh corpus batch each time), it pulls the policy back
towards fluent corpus text while the reward pulls it towards high-reward modes.
"""

from __future__ import annotations

import numpy as np
import torch

from agents.networks.transformer import TransformerActorCritic
from agents.rlhf.sft import completion_cross_entropy, demonstration_batch
from envs.token_tasks import TokenTask


def ptx_loss(
    model: TransformerActorCritic, tokens: torch.Tensor, mask: torch.Tensor, ptx_coef: float
) -> torch.Tensor:
    """L_ptx = −γ_ptx · mean_t log π(y_t | y_<t) over the masked (completion) tokens of a batch."""
    return ptx_coef * completion_cross_entropy(model, tokens, mask)


class PtxTerm:
    """A callable for the PPO update: each call draws a corpus batch and returns L_ptx for it.

    `corpus` is a task whose `demonstration(rng)` draws corpus sentences
    (`envs.sentiment_corpus.CorpusTask`). The last value is kept in `last_log_likelihood` for
    logging (the mean LL per token, without γ). Its random generator is `rng` (the trainer passes
    its own checkpointed generator, so a resumed run draws the same batches).
    """

    def __init__(
        self,
        model: TransformerActorCritic,
        corpus: TokenTask,
        ptx_coef: float,
        batch_size: int = 32,
        seed: int | np.random.Generator = 0,
    ) -> None:
        if ptx_coef < 0:
            raise ValueError(f"ptx_coef must be >= 0, got {ptx_coef}")
        self.model, self.corpus, self.ptx_coef, self.batch_size = model, corpus, ptx_coef, batch_size
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self.last_log_likelihood = float("nan")

    def __call__(self) -> torch.Tensor:
        device = self.model.position_embedding.device
        tokens, mask = demonstration_batch(self.corpus, self.batch_size, self.rng, self.model.max_len)
        loss = ptx_loss(self.model, tokens.to(device), mask.to(device), self.ptx_coef)
        self.last_log_likelihood = -float(loss.detach()) / self.ptx_coef if self.ptx_coef else float("nan")
        return loss

