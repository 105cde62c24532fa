"""TransformerActorCritic: KV-cache act and prefix-sharing evaluate_actions against full forwards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs.token_generation  # noqa: F401  (registers the TokenGen/* ids)
from agents.networks.actor_critic import ActorCritic
from agents.networks.transformer import TransformerActorCritic

VOCAB, MAX_LEN, PAD = 17, 12, 0
ATOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


def make_model(seed: int = 0) -> TransformerActorCritic:
    torch.manual_seed(seed)
    model = TransformerActorCritic(VOCAB, MAX_LEN, d_model=32, n_layers=2, n_heads=4)
    # A random-looking policy instead of the near-uniform initial one, so that differences in
    # the logits would show in log-probabilities.
    with torch.no_grad():
        model.policy_head.weight.normal_(0.0, 1.0)
    return model


def pad_rows(rows: list[list[int]], width: int = MAX_LEN) -> np.ndarray:
    obs = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        obs[i, : len(row)] = row
    return obs


def full_forward_at_last(model: TransformerActorCritic, obs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Reference: log-probs [B, V] and values [B] from one uncached forward per row."""
    log_probs, values = [], []
    with torch.no_grad():
        for row in obs:
            n = int((row != PAD).sum())
            logits, vals = model.sequence_logits_and_values(torch.as_tensor(row[:n])[None])
            log_probs.append(logits[0, n - 1].log_softmax(-1))
            values.append(vals[0, n - 1])
    return torch.stack(log_probs), torch.stack(values)


def assert_act_matches_full_forward(model: TransformerActorCritic, obs: np.ndarray, **kwargs) -> torch.Tensor:
    action, logp, value = model.act(obs, **kwargs)
    ref_log_probs, ref_values = full_forward_at_last(model, obs)
    ref_logp = ref_log_probs.gather(1, action[:, None]).squeeze(1)
    torch.testing.assert_close(logp, ref_logp, atol=ATOL, rtol=0)
    torch.testing.assert_close(value, ref_values, atol=ATOL, rtol=0)
    return action


def test_is_an_actor_critic_with_the_toolkit_interface() -> None:
    model = make_model()
    assert isinstance(model, ActorCritic)
    obs = pad_rows([[3, 4, 5], [6], [7, 8, 9, 10, 11]])
    logits, value = model(obs)
    assert logits.shape == (3, VOCAB) and value.shape == (3,)
    torch.testing.assert_close(model.value(obs), value)
    action, logp, value = model.act(torch.as_tensor(obs, dtype=torch.int32))
    assert action.dtype == torch.long and logp.shape == value.shape == (3,)


def test_kv_cache_act_equals_full_forward_while_rows_reset_at_different_times() -> None:
    """A batched generation where each row's episode ends at its own time (new prompt of a new
    length, like a vector env's autoreset): at every step the cached act must give the same
    log π(a|s) and V(s) as a full forward, and mostly take the incremental path."""
    model = make_model()
    rng = np.random.default_rng(0)

    def new_prompt() -> list[int]:
        return rng.integers(2, VOCAB, size=int(rng.integers(1, 5))).tolist()

    rows = [new_prompt() for _ in range(6)]
    counts = {"incremental": 0, "rebuilt": 0}
    for step in range(40):
        obs = pad_rows(rows)
        action = assert_act_matches_full_forward(model, obs)
        for key in counts:
            counts[key] += model.last_act_rows[key]
        for i, a in enumerate(action.tolist()):
            ended = len(rows[i]) + 1 >= MAX_LEN or rng.random() < 0.2
            rows[i] = new_prompt() if ended else rows[i] + [a]
    assert counts["incremental"] > 3 * counts["rebuilt"] > 0


def test_act_cache_survives_other_batches_weight_updates_and_inference_mode() -> None:
    model = make_model()
    rows = [[3, 4], [5, 6, 7], [8]]
    obs = pad_rows(rows)
    model.act(obs)
    # Same rows in another order: row 2 ([3, 4]) no longer extends its cached row ([8]) and is
    # rebuilt; [5, 6, 7] stayed in row 1, and a one-token row needs no past either way.
    assert_act_matches_full_forward(model, obs[::-1].copy())
    assert model.last_act_rows == {"incremental": 2, "rebuilt": 1}
    # Another batch size.
    assert_act_matches_full_forward(model, obs[:2])
    # A weight update makes every cached key/value stale.
    action = model.act(obs)[0]
    # Fused Adam does not bump the parameters' version counters: the cache must notice anyway.
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01, fused=True)
    logits, values = model.sequence_logits_and_values(torch.as_tensor(obs))
    (logits.logsumexp(-1).sum() + values.sum()).backward()
    optimizer.step()
    grown = pad_rows([row + [a] for row, a in zip(rows, action.tolist())])
    assert_act_matches_full_forward(model, grown)
    assert model.last_act_rows["rebuilt"] == 3
    # The trainer samples under torch.inference_mode; tests and evaluation may not.
    with torch.inference_mode():
        action = model.act(grown)[0]
    longer = pad_rows([row + [a, b] for row, a, b in zip(rows, action.tolist(), [2, 3, 4])])
    assert_act_matches_full_forward(model, longer)
    model.reset_cache()
    assert_act_matches_full_forward(model, longer)
    assert model.last_act_rows["rebuilt"] == 3


def test_act_deterministic_is_argmax_and_never_emits_pad() -> None:
    model = make_model()
    obs = pad_rows([[3, 4, 5], [9, 2]])
    action = assert_act_matches_full_forward(model, obs, deterministic=True)
    logits, _ = model(obs)
    assert torch.equal(action, logits.argmax(-1))
    many = pad_rows([[3, 4, 5]] * 2000)
    assert (model.act(many)[0] != PAD).all()
    assert torch.equal(logits.argmax(-1), model(obs)[0].argmax(-1))
    assert (logits[:, PAD] < -1e30).all()


def test_sequence_forward_is_causal() -> None:
    model = make_model()
    tokens = torch.tensor([[3, 4, 5, 6, 7, 8]])
    changed = tokens.clone()
    changed[0, 4] = 11
    with torch.no_grad():
        logits_a, values_a = model.sequence_logits_and_values(tokens)
        logits_b, values_b = model.sequence_logits_and_values(changed)
    torch.testing.assert_close(logits_a[:, :4], logits_b[:, :4])
    torch.testing.assert_close(values_a[:, :4], values_b[:, :4])
    assert not torch.allclose(logits_a[:, 4:], logits_b[:, 4:])


def transitions_of(sequence: list[int], prompt_len: int) -> list[tuple[list[int], int]]:
    """(obs, action) pairs of one episode that generated sequence[prompt_len:]."""
    return [(sequence[:t], sequence[t]) for t in range(prompt_len, len(sequence))]


def test_evaluate_actions_equals_per_row_computation_with_prefix_sharing() -> None:
    model = make_model()
    rng = np.random.default_rng(1)
    episode_a = [3, 4, 5, 6, 7, 8, 1]
    episode_b = [3, 4, 5, 9, 10, 1]  # same prompt as a, another completion: branches after 3
    episode_c = [12, 13, 14, 15, 16, 2, 2, 2, 2, 2, 2, 1]  # fills max_len
    episode_d = [3, 4]  # a one-step episode whose obs [3] is a prefix of a and b
    pairs = (
        transitions_of(episode_a, 3)
        + transitions_of(episode_b, 3)
        + transitions_of(episode_c, 2)
        + transitions_of(episode_d, 1)
    )
    pairs += [pairs[2], ([3, 4, 5], 11)]  # a duplicate row; the same obs with another action
    order = rng.permutation(len(pairs))
    obs = pad_rows([pairs[i][0] for i in order])
    actions = torch.tensor([pairs[i][1] for i in order])

    logp, entropy, value = model.evaluate_actions(obs, actions)
    # Distinct sequences that are no other row's prefix: the last obs of a, b and c.
    assert model.last_num_sequences == 3

    # Naive reference: one forward per row, with gradients, on a copy of the model.
    reference = make_model()
    ref_logp, ref_entropy, ref_value = [], [], []
    for row, action in zip(obs, actions):
        n = int((row != PAD).sum())
        logits, values = reference.sequence_logits_and_values(torch.as_tensor(row[:n])[None])
        log_probs = logits[0, n - 1].log_softmax(-1)
        ref_logp.append(log_probs[action])
        ref_entropy.append(-(log_probs.exp() * log_probs).sum())
        ref_value.append(values[0, n - 1])
    ref_logp, ref_entropy, ref_value = torch.stack(ref_logp), torch.stack(ref_entropy), torch.stack(ref_value)
    torch.testing.assert_close(logp, ref_logp, atol=ATOL, rtol=0)
    torch.testing.assert_close(entropy, ref_entropy, atol=ATOL, rtol=0)
    torch.testing.assert_close(value, ref_value, atol=ATOL, rtol=0)

    # The PPO update differentiates through these: the gradients must agree too.
    weights = torch.linspace(0.5, 1.5, len(order))
    ((weights * (logp + 0.1 * entropy + value)).sum()).backward()
    ((weights * (ref_logp + 0.1 * ref_entropy + ref_value)).sum()).backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        # float32 sums in another order: differences of a few 1e-5 are rounding, not a bug.
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-3, msg=name)


def test_evaluate_actions_unrelated_rows_are_one_sequence_each() -> None:
    model = make_model()
    obs = pad_rows([[3, 4], [4, 3], [5], [6, 7, 8]])
    model.evaluate_actions(obs, torch.tensor([2, 2, 2, 2]))
    assert model.last_num_sequences == 4


def test_invalid_observations_are_rejected() -> None:
    model = make_model()
    with pytest.raises(ValueError, match="right-padded"):
        model.act(pad_rows([[3, 0, 4]]))
    with pytest.raises(ValueError, match="at least one real token"):
        model.value(pad_rows([[]]))
    with pytest.raises(ValueError, match="shape"):
        model.act(np.zeros((2, MAX_LEN + 1), dtype=np.int64) + 3)


def test_acts_in_the_token_env() -> None:
    import gymnasium as gym

    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make("TokenGen/Sentiment-v0", max_new_tokens=4)] * 3,
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    model = TransformerActorCritic.from_spaces(
        envs.single_observation_space, int(envs.single_action_space.n), d_model=32
    )
    assert model.max_len == 3 + 4 and model.vocab_size == envs.single_action_space.n
    obs, _ = envs.reset(seed=0)
    for _ in range(10):
        action = assert_act_matches_full_forward_env(model, obs)
        obs, reward, terminated, truncated, _ = envs.step(action.numpy())
    envs.close()


def assert_act_matches_full_forward_env(model: TransformerActorCritic, obs: np.ndarray) -> torch.Tensor:
    action, logp, value = model.act(obs)
    with torch.no_grad():
        logits, ref_value = model(obs)
    torch.testing.assert_close(
        logp, logits.log_softmax(-1).gather(1, action[:, None]).squeeze(1), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(value, ref_value, atol=ATOL, rtol=0)
    return action
