"""A GPT-style causal transformer actor-critic for token-generation envs.

Observations are what `envs.token_generation.TokenGenerationEnv` emits: int arrays [B, max_len]
of prompt + generated tokens, right-padded with PAD. The length of a row is its number of non-PAD
tokens; the state s_t of a row is its tokens, and π(·|s_t), V(s_t) are read at its last real
token. The LM head gives the policy logits, a scalar head on the same trunk gives V per position.

Architecture (Radford et al. 2019, GPT-2): token + learned positional embeddings, n_layers pre-LN
blocks x ← x + Attn(LN(x)); x ← x + MLP(LN(x)), causal multi-head attention
softmax(QKᵀ/√d_head + causal mask)·V, a final LN, then two heads. No dropout: an RL policy must
give the same log π(a|s) at rollout time and in the update, or the PPO ratio is biased.

LM head untied from the token embedding: with a vocabulary of a few hundred tokens tying saves
little, and an untied head can be initialised like every policy head of the toolkit (orthogonal,
gain 0.01 → a near-uniform first policy) without shrinking the input embeddings with it.

The PAD logit is masked to the dtype's minimum: PAD cannot be part of a text, so the policy never
samples it (log π(PAD|s) is hugely negative, its probability exactly 0, its entropy term 0).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from agents.networks.actor_critic import ActorCritic, layer_init
from agents.networks.attention import Block
from agents.networks.distributions import (
    CategoricalDistribution,
    log_prob_and_entropy,
    masked_logits,
    sample_action,
)
from agents.networks.optimizer_steps import parameter_fingerprint, start_counting


class TransformerActorCritic(ActorCritic):
    """Causal transformer policy π(a|s) = softmax(LM head) and value V(s) at the last real token.

    Calls (all take observations as the env emits them, [B, L ≤ max_len], any integer dtype):
    - `act(obs)`: sampling, with a per-row KV cache (no gradients);
    - `value(obs)`, `forward(obs)`: one full forward;
    - `evaluate_actions(obs, actions)`: for the PPO update, one forward per distinct sequence;
    - `sequence_logits_and_values(tokens)`: logits and values at every position.
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int = 64,
        n_layers: int = 2,
        n_heads: int = 4,
        pad_id: int = 0,
        mlp_ratio: int = 4,
        value_grad_scale: float = 0.0,
    ) -> None:
        super().__init__()
        start_counting()
        self.distribution = CategoricalDistribution(vocab_size)  # the next token
        self.value_grad_scale = value_grad_scale
        self.vocab_size = vocab_size
        self.max_len = max_len
        self.pad_id = pad_id
        self.token_embedding = nn.Embedding(vocab_size, d_model)
        self.position_embedding = nn.Parameter(torch.zeros(max_len, d_model))
        self.blocks = nn.ModuleList(Block(d_model, n_heads, mlp_ratio) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(d_model)
        self.policy_head = nn.Linear(d_model, vocab_size)
        # The critic reads the trunk's features but does not train them (see _heads).
        self.value_head = nn.Sequential(nn.Linear(d_model, d_model), nn.Tanh(), nn.Linear(d_model, 1))
        self._init_weights(n_layers)
        self.register_buffer(
            "_causal", torch.ones(max_len, max_len, dtype=torch.bool).tril(), persistent=False
        )
        self.register_buffer("_pad_action", torch.arange(vocab_size) == pad_id, persistent=False)
        self.reset_cache()
        # Diagnostics read by tests and logs: how the last act / evaluate_actions call was served.
        self.last_act_rows = {"incremental": 0, "rebuilt": 0}
        self.last_num_sequences = 0

    @classmethod
    def from_spaces(
        cls, observation_space: gym.spaces.MultiDiscrete, num_actions: int, **kwargs: int
    ) -> "TransformerActorCritic":
        """Build for a token env: vocab from the action space, max_len from the observation."""
        if not isinstance(observation_space, gym.spaces.MultiDiscrete) or len(observation_space.shape) != 1:
            raise ValueError(f"expected a 1-D MultiDiscrete token observation space, got {observation_space}")
        if not (observation_space.nvec == num_actions).all():
            raise ValueError("observation tokens and actions must share one vocabulary")
        return cls(num_actions, observation_space.shape[0], **kwargs)

    def _init_weights(self, n_layers: int) -> None:
        # GPT-2 initialisation for the trunk: N(0, 0.02), residual output projections scaled by
        # 1/√(2·n_layers) so the residual stream's variance does not grow with depth.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        nn.init.normal_(self.position_embedding, std=0.02)
        for block in self.blocks:
            nn.init.normal_(block.attn.proj.weight, std=0.02 / math.sqrt(2 * n_layers))
            nn.init.normal_(block.mlp[2].weight, std=0.02 / math.sqrt(2 * n_layers))
        # Heads as in every actor-critic of the toolkit (agents/networks/actor_critic.py).
        layer_init(self.policy_head, 0.01)
        layer_init(self.value_head[0], math.sqrt(2))
        layer_init(self.value_head[2], 1.0)

    # ---------------------------------------------------------------------------------------
    # Shared pieces
    # ---------------------------------------------------------------------------------------

    def _tokens(self, obs: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """obs (any integer dtype) → (tokens [B, L] long on the model's device, lengths [B])."""
        tokens = torch.as_tensor(obs, device=self.position_embedding.device).long()
        if tokens.dim() != 2 or not 1 <= tokens.shape[1] <= self.max_len:
            raise ValueError(
                f"expected token arrays of shape [B, L ≤ {self.max_len}], got {tuple(tokens.shape)}"
            )
        real = tokens != self.pad_id
        # Right padding only: a real token after a PAD would make "length" ambiguous.
        if tokens.shape[1] > 1 and bool((real[:, 1:] & ~real[:, :-1]).any()):
            raise ValueError("observations must be right-padded: PAD found inside a sequence")
        lengths = real.sum(dim=1)
        if bool((lengths == 0).any()):
            raise ValueError("every observation row needs at least one real token")
        return tokens, lengths

    def _heads(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Final LN, then policy logits (PAD masked) and values, at any leading shape.

        The value MLP sees detached features (or a `value_grad_scale` share of their gradient): a
        fresh critic's large errors would otherwise drive the shared trunk of a pretrained (SFT)
        policy. Measured on DigitSort after SFT: with
        the value gradient flowing into the trunk, the first PPO update moved the policy by
        approx KL 0.68 nats per token; detached, 0.008. (InstructGPT avoids the same
        interference with a separate value model.)
        """
        h = self.ln_f(hidden)
        logits = self.policy_head(h)
        logits = logits.masked_fill(self._pad_action, torch.finfo(logits.dtype).min)
        # Forward value unchanged; backward, only value_grad_scale of its gradient reaches the trunk.
        value_input = (
            h.detach()
            if self.value_grad_scale == 0
            else h.detach() + self.value_grad_scale * (h - h.detach())
        )
        return logits, self.value_head(value_input).squeeze(-1)

    def _trunk(self, tokens: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """Full causal pass over tokens [B, L] → hidden [B, L, d] and each layer's (k, v)."""
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.position_embedding[:length]
        allowed = self._causal[:length, :length]
        kv = []
        for block in self.blocks:
            x, layer_kv = block(x, allowed)
            kv.append(layer_kv)
        return x, kv

    def sequence_logits_and_values(
        self, tokens: torch.Tensor | np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One causal forward: logits [B, L, V] and values [B, L]; position t sees tokens ≤ t.

        Positions at or after a row's padding hold meaningless outputs; causality guarantees
        that real positions never see the padding.
        """
        tokens = torch.as_tensor(tokens, device=self.position_embedding.device).long()
        hidden, _ = self._trunk(tokens)
        return self._heads(hidden)

    def forward(self, obs: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """The ActorCritic contract: (logits [B, V], value [B]) at each row's last real token."""
        tokens, lengths = self._tokens(obs)
        tokens = tokens[:, : int(lengths.max())]  # nothing after the longest row matters
        logits, values = self.sequence_logits_and_values(tokens)
        rows = torch.arange(tokens.shape[0], device=tokens.device)
        return logits[rows, lengths - 1], values[rows, lengths - 1]

    # ---------------------------------------------------------------------------------------
    # Rollouts: act with a KV cache
    # ---------------------------------------------------------------------------------------

    def reset_cache(self) -> None:
        """Forget the cache; the next `act` rebuilds every row from its full prefix."""
        super().reset_cache()
        self._cache_k: list[torch.Tensor] = []  # per layer [B, H, max_len, d_head]
        self._cache_v: list[torch.Tensor] = []
        self._cache_tokens: torch.Tensor | None = None  # [B, max_len] tokens the cache was built from
        self._cache_len: torch.Tensor | None = None  # [B]: positions < len hold valid K/V
        self._cache_params: tuple | None = None

    def _ensure_cache(self, batch: int, device: torch.device, dtype: torch.dtype) -> None:
        fingerprint = parameter_fingerprint(self)
        if (
            self._cache_tokens is not None
            and self._cache_tokens.shape[0] == batch
            and self._cache_tokens.device == device
            and self._cache_k[0].dtype == dtype
            and self._cache_params == fingerprint
            # Tensors made under torch.inference_mode cannot be updated in place outside it.
            and self._cache_k[0].is_inference() == torch.is_inference_mode_enabled()
        ):
            return
        first = self.blocks[0].attn
        shape = (batch, first.n_heads, self.max_len, first.d_head)
        self._cache_k = [torch.zeros(shape, device=device, dtype=dtype) for _ in self.blocks]
        self._cache_v = [torch.zeros(shape, device=device, dtype=dtype) for _ in self.blocks]
        self._cache_tokens = torch.full((batch, self.max_len), self.pad_id, device=device, dtype=torch.long)
        self._cache_len = torch.zeros(batch, device=device, dtype=torch.long)
        self._cache_params = fingerprint

    def _rebuild_rows(self, rows: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Full forward of `rows` from their whole prefix; refill their cache. → hidden [R, d]."""
        width = int(lengths.max())
        hidden, kv = self._trunk(tokens[:, :width])
        for layer, (k, v) in enumerate(kv):
            self._cache_k[layer][rows, :, :width] = k
            self._cache_v[layer][rows, :, :width] = v
        return hidden[torch.arange(len(rows), device=rows.device), lengths - 1]

    def _step_rows(
        self, rows: torch.Tensor, last_tokens: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Feed one token per row at its own position, attending to cached K/V. → hidden [E, d]."""
        width = int(positions.max())  # cached positions any row may attend to: [0, width)
        x = self.token_embedding(last_tokens)[:, None] + self.position_embedding[positions][:, None]
        # Key j < width is visible to a row at position p iff j < p; the new key is always visible.
        past_visible = torch.arange(width, device=rows.device)[None, :] < positions[:, None]
        allowed = torch.cat([past_visible, past_visible.new_ones(len(rows), 1)], 1)[:, None, None, :]
        for layer, block in enumerate(self.blocks):
            past = (self._cache_k[layer][rows, :, :width], self._cache_v[layer][rows, :, :width])
            x, (k, v) = block(x, allowed, past)
            self._cache_k[layer][rows, :, positions] = k[:, :, 0]
            self._cache_v[layer][rows, :, positions] = v[:, :, 0]
        return x[:, 0]

    @torch.no_grad()
    def act(
        self, obs: torch.Tensor | np.ndarray, deterministic: bool = False, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Sample a ~ π(·|s) (argmax if deterministic) at each row's last token → (a, log π(a|s), V(s)).

        KV cache: the module keeps, per row of the current batch, the keys/values of every layer
        for the tokens it last saw. A row of length n whose first n−1 tokens equal cached tokens
        (the usual case: the previous call's row plus the action just taken) feeds only token
        n−1 at position n−1, so a step costs one token through the layers, not n. Any other row
        (a new episode after a reset, another batch) is rebuilt from its full prefix. The cache
        is checked against obs on every call and dropped when the weights change, so results
        never depend on it (up to float rounding). No gradients flow from `act`.
        """
        tokens, lengths = self._tokens(obs)
        if tokens.shape[1] < self.max_len:
            tokens = F.pad(tokens, (0, self.max_len - tokens.shape[1]), value=self.pad_id)
        batch = tokens.shape[0]
        self._ensure_cache(batch, tokens.device, self.position_embedding.dtype)
        last = lengths - 1
        columns = torch.arange(self.max_len, device=tokens.device)[None, :]
        prefix_cached = ((self._cache_tokens == tokens) | (columns >= last[:, None])).all(dim=1)
        incremental = prefix_cached & (self._cache_len >= last)

        hidden = self.position_embedding.new_empty(batch, self.position_embedding.shape[1])
        step_rows = incremental.nonzero().squeeze(1)
        rebuild_rows = (~incremental).nonzero().squeeze(1)
        if len(rebuild_rows):
            hidden[rebuild_rows] = self._rebuild_rows(
                rebuild_rows, tokens[rebuild_rows], lengths[rebuild_rows]
            )
        if len(step_rows):
            hidden[step_rows] = self._step_rows(
                step_rows, tokens[step_rows, last[step_rows]], last[step_rows]
            )
        self._cache_tokens = tokens.clone()
        self._cache_len = lengths.clone()
        self.last_act_rows = {"incremental": len(step_rows), "rebuilt": len(rebuild_rows)}

        logits, value = self._heads(hidden)
        action, logp = sample_action(masked_logits(logits, mask), deterministic)
        return action, logp, value

    # ---------------------------------------------------------------------------------------
    # Update: evaluate stored actions, one forward per distinct sequence
    # ---------------------------------------------------------------------------------------

    def _covering_sequences(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows to run forward and, for every row, which of them holds it as a prefix.

        Returns (sequences [M, L], source [B]) such that tokens[i, :n_i] == sequences[source[i],
        :n_i] and no sequence is a prefix of another. How: sort the distinct rows
        lexicographically with PAD below every token; then a row's extensions form the block
        right after it, so a row is a prefix of some row iff it is a prefix of its successor, and
        it is served by the first row at or after it that is not a prefix of its successor.
        """
        key = tokens.masked_fill(tokens == self.pad_id, -1)
        unique, inverse = torch.unique(key, dim=0, return_inverse=True)
        count = unique.shape[0]
        is_prefix_of_next = ((unique[:-1] == -1) | (unique[:-1] == unique[1:])).all(dim=1)
        maximal = torch.cat([~is_prefix_of_next, is_prefix_of_next.new_ones(1)])
        index = torch.arange(count, device=tokens.device)
        # server[u] = min{u' ≥ u : maximal[u']}: a reversed running minimum.
        candidate = torch.where(maximal, index, torch.full_like(index, count))
        server = candidate.flip(0).cummin(dim=0).values.flip(0)
        slot = torch.cumsum(maximal.long(), 0) - 1  # position of each maximal row among them
        sequences = unique[maximal].masked_fill(unique[maximal] == -1, self.pad_id)
        return sequences, slot[server][inverse]

    def evaluate_actions(
        self, obs: torch.Tensor | np.ndarray, actions: torch.Tensor, mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log π(a|s), H(π(·|s)) = −Σ_a π log π, V(s)) for stored (obs, action) pairs, with gradients.

        Rows of one episode are prefixes of each other (s_{t+1} = s_t + a_t), so the batch is
        reduced to the sequences that are no row's strict prefix, each run through the model once,
        and every row reads its logits and value at position n_i − 1 of the sequence holding it.
        Causal attention makes position n_i − 1 depend on the first n_i tokens only, so this
        equals one forward per row. (Holding obs_i, not obs_i + a_i, is all a row needs: its own
        action is scored by the logits at its last observed token.)
        """
        tokens, lengths = self._tokens(obs)
        sequences, source = self._covering_sequences(tokens)
        width = int((sequences != self.pad_id).sum(dim=1).max())
        logits, values = self.sequence_logits_and_values(sequences[:, :width])
        self.last_num_sequences = sequences.shape[0]
        logits, value = logits[source, lengths - 1], values[source, lengths - 1]
        actions = torch.as_tensor(actions, device=logits.device)
        logp, entropy = log_prob_and_entropy(masked_logits(logits, mask), actions)
        return logp, entropy, value
