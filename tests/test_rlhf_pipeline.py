"""RLHF pipeline pieces: Bradley–Terry loss, stage caching, the ptx term, the corpus grammar,
the reward-model env, and a seconds-long run of the offline stages."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from agents.config import PipelineConfig, load_config
from agents.networks.transformer import TransformerActorCritic
from agents.rlhf.evaluation import sample_completions
from agents.rlhf.ptx import PtxTerm, ptx_loss
from agents.rlhf.reward_model import (
    RewardModel,
    RewardModelEnv,
    bradley_terry_loss,
    label_pairs,
    pairwise_accuracy,
    rm_tokens,
    train_reward_model,
)
from agents.rlhf.sft import demonstration_batch
from agents.run.pipeline import run_pipeline
from agents.run.stages import DONE_MARKER, run_stage, stage_dir
from envs.sentiment_corpus import CorpusTask, SentimentGrammar, build_corpus, grammar_accepts, split_prompts
from envs.token_generation import TokenGenerationEnv
from envs.token_tasks import EOS_ID, PAD_ID, SentimentTask

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see tests/conftest.py


@pytest.fixture(scope="module")
def task() -> SentimentTask:
    return SentimentTask()


# ------------------------------------------------------------------------------ reward model


def test_bradley_terry_loss_on_hand_made_pairs() -> None:
    # −log σ(2 − 0) = log(1 + e^−2); −log σ(0) = log 2; a wrong order costs log(1 + e^3).
    assert float(bradley_terry_loss(torch.tensor([2.0]), torch.tensor([0.0]))) == pytest.approx(
        math.log1p(math.exp(-2))
    )
    assert float(bradley_terry_loss(torch.tensor([1.5]), torch.tensor([1.5]))) == pytest.approx(math.log(2))
    both = bradley_terry_loss(torch.tensor([2.0, -1.0]), torch.tensor([0.0, 2.0]))
    assert float(both) == pytest.approx((math.log1p(math.exp(-2)) + math.log1p(math.exp(3))) / 2)
    # Stable where the naive formula overflows: a margin of 200 costs ~e^−200, −200 costs ~200.
    assert float(bradley_terry_loss(torch.tensor([100.0]), torch.tensor([-100.0]))) == pytest.approx(
        0.0, abs=1e-12
    )
    assert float(bradley_terry_loss(torch.tensor([-100.0]), torch.tensor([100.0]))) == pytest.approx(200.0)


def test_labels_prefer_the_higher_gold_score_drop_ties_and_flip_with_noise() -> None:
    first, second = [[5, 6], [5, 7], [5, 8]], [[5, 9], [5, 10], [5, 11, EOS_ID]]
    pairs = label_pairs(first, second, [0.9, -0.5, 0.2], [0.1, 0.5, 0.2], max_len=4)
    assert len(pairs) == 2  # the tie (0.2, 0.2) is dropped
    assert pairs.chosen.tolist() == [[5, 6, 0, 0], [5, 10, 0, 0]]
    assert pairs.rejected.tolist() == [[5, 9, 0, 0], [5, 7, 0, 0]]
    assert rm_tokens([[5, 11, EOS_ID]], 4).tolist() == [[5, 11, PAD_ID, PAD_ID]]  # EOS is not scored
    many = label_pairs(
        [[5]] * 2000, [[6]] * 2000, [1.0] * 2000, [0.0] * 2000, 2, 0.2, np.random.default_rng(0)
    )
    flipped = float((many.chosen[:, 0] == 6).float().mean())
    assert flipped == pytest.approx(0.2, abs=0.03)


def test_reward_model_scalar_head_trains_the_trunk_and_ranks_pairs() -> None:
    torch.manual_seed(0)
    policy = TransformerActorCritic(vocab_size=12, max_len=6, d_model=16, n_layers=1, n_heads=2)
    model = RewardModel.from_policy(policy)
    tokens = torch.tensor([[3, 4, 5, 0, 0, 0]])
    assert torch.allclose(model.score(tokens), policy.value(tokens))  # same weights, same scalar
    model.score(tokens).sum().backward()
    assert model.token_embedding.weight.grad.abs().sum() > 0  # unlike the critic, it shapes the trunk
    pairs = label_pairs([[3, 4, 9]] * 4, [[3, 4, 8]] * 4, [1.0] * 4, [0.0] * 4, max_len=6)
    result = train_reward_model(model, pairs, steps=30, batch_size=4, lr=1e-2)
    assert result["loss"] < result["initial_loss"]
    assert pairwise_accuracy(model, pairs) == 1.0


# ------------------------------------------------------------------------------ stage caching


def test_a_finished_stage_is_skipped_and_an_unfinished_one_reruns(tmp_path) -> None:
    calls: list[str] = []

    def work(directory):
        calls.append(directory.name)
        (directory / "output.txt").write_text("result")
        return {"value": len(calls)}

    first = run_stage(tmp_path, "a", work)
    assert first["value"] == 1 and first["wall_time_s"] >= 0
    assert (stage_dir(tmp_path, "a") / DONE_MARKER).is_file()
    assert run_stage(tmp_path, "a", work) == first  # done: skipped, its summary returned
    assert calls == ["a"]

    # A crashed attempt: outputs but no marker. The stage reruns in an emptied directory.
    crashed = stage_dir(tmp_path, "b")
    crashed.mkdir(parents=True)
    (crashed / "half_written.tmp").write_text("")

    def crash(directory):
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(tmp_path, "b", crash)
    assert not (crashed / DONE_MARKER).exists()
    assert run_stage(tmp_path, "b", work)["value"] == 2
    assert not (crashed / "half_written.tmp").exists()
    assert calls == ["a", "b"]


def test_a_stage_older_than_its_upstream_reruns(tmp_path) -> None:
    calls: list[str] = []

    def work(directory):
        calls.append(directory.name)
        return {}

    run_stage(tmp_path, "eval", work, upstream=["ppo"])  # evaluated before PPO existed
    run_stage(tmp_path, "ppo", work)
    eval_marker = stage_dir(tmp_path, "eval") / DONE_MARKER
    earlier = (stage_dir(tmp_path, "ppo") / DONE_MARKER).stat().st_mtime_ns - 10**9
    os.utime(eval_marker, ns=(earlier, earlier))  # PPO finished after the evaluation
    run_stage(tmp_path, "eval", work, upstream=["ppo"])
    run_stage(tmp_path, "eval", work, upstream=["ppo"])  # now fresh: skipped
    assert calls == ["eval", "ppo", "eval"]


# ------------------------------------------------------------------------------ ptx term


def test_ptx_term_is_gamma_times_the_cross_entropy_of_the_completion_tokens(task) -> None:
    torch.manual_seed(0)
    model = TransformerActorCritic(
        len(task.vocab), task.max_demonstration_len, d_model=16, n_layers=1, n_heads=2
    )
    sentences = [
        task.encode("the movie was very good .") + [EOS_ID],
        task.encode("i hated the food") + [EOS_ID],
    ]
    corpus = CorpusTask(task, sentences)
    tokens, mask = demonstration_batch(corpus, 4, np.random.default_rng(0), model.max_len)

    # Independently: log-softmax of one full forward per sentence, summed by hand over the
    # positions that predict completion tokens (prompt_length .. end, EOS included).
    total, count = 0.0, 0
    for row in tokens.tolist():
        row = [t for t in row if t != PAD_ID]
        start = task.prompt_length(row)
        with torch.no_grad():
            logits, _ = model.sequence_logits_and_values(torch.tensor([row]))
        log_probs = F.log_softmax(logits[0], dim=-1)
        for t in range(start, len(row)):
            total -= float(log_probs[t - 1, row[t]])
            count += 1
    cross_entropy = total / count
    assert count == int(mask.sum())
    assert float(ptx_loss(model, tokens, mask, 0.3).detach()) == pytest.approx(0.3 * cross_entropy, rel=1e-5)

    # The callable for the PPO update draws the same batch from the same seed, with gradients.
    term = PtxTerm(model, corpus, ptx_coef=0.3, batch_size=4, seed=np.random.default_rng(0))
    loss = term()
    assert loss.item() == pytest.approx(0.3 * cross_entropy, rel=1e-5)
    assert term.last_log_likelihood == pytest.approx(-cross_entropy, rel=1e-5)
    loss.backward()
    assert model.policy_head.weight.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ corpus grammar


def test_grammar_accepts_generated_sentences_and_rejects_shuffled_ones(task) -> None:
    grammar = SentimentGrammar(task)
    corpus = build_corpus(task, 600, held_out_fraction=0.2, seed=3)
    sentences = corpus.train + corpus.held_out
    assert all(grammar.accepts(s) for s in sentences)
    assert grammar_accepts(sentences[0])  # the process-wide default grammar agrees
    rng = np.random.default_rng(0)
    shuffled = []
    for sentence in sentences:
        words = sentence[:-1]
        permuted = [words[i] for i in rng.permutation(len(words))]
        if permuted != words:
            shuffled.append(permuted + [EOS_ID])
    rejected = np.mean([not grammar.accepts(s) for s in shuffled])
    # A few permutations stay grammatical ("good but bad" ↔ "bad but good"); nearly all do not.
    assert rejected > 0.95
    for text in [
        "the movie was good the", "i the loved food", "it was the good", "the movie was", "good movie"
    ]:
        assert not grammar.accepts(task.encode(text)), text
    assert not grammar.accepts(task.encode("the movie was good") + [EOS_ID, 5])  # nothing after EOS
    assert grammar.accepts(task.encode("the movie was very good !") + [EOS_ID, PAD_ID, PAD_ID])


def test_corpus_is_deterministic_distinct_mixed_and_split(task) -> None:
    a = build_corpus(task, 400, held_out_fraction=0.25, seed=7)
    b = build_corpus(task, 400, held_out_fraction=0.25, seed=7)
    assert a == b
    assert build_corpus(task, 400, held_out_fraction=0.25, seed=8) != a
    assert (len(a.train), len(a.held_out)) == (300, 100)
    everything = [tuple(s) for s in a.train + a.held_out]
    assert len(set(everything)) == 400  # distinct, so held-out sentences are unseen in train
    gold = np.array([task.score([], s) for s in a.train])
    assert (gold > 0.05).mean() > 0.25 and (gold < -0.05).mean() > 0.25
    train, held_out = split_prompts(task, 0.2, seed=0)
    assert (
        len(train) + len(held_out) == len(task.prompts)
        and not {tuple(p) for p in train} & {tuple(p) for p in held_out}
    )


# ------------------------------------------------------------------------------ reward-model env


def test_reward_model_env_replaces_the_final_reward_and_reports_the_gold_score(task) -> None:
    env = TokenGenerationEnv(task, max_new_tokens=3, no_eos_penalty=-0.5)
    torch.manual_seed(0)
    model = RewardModel(len(task.vocab), env.max_len, d_model=16, n_layers=1, n_heads=2)
    prompt = task.encode("i")
    wrapped = RewardModelEnv(env, model, prompts=[prompt])
    obs, _ = wrapped.reset(seed=0)
    assert obs[:1].tolist() == prompt  # episodes start from the given prompts
    good = task.encode("loved the")
    reward = wrapped.step(good[0])[1]
    assert reward == 0.0
    obs, reward, terminated, truncated, info = wrapped.step(good[1])
    obs, reward, terminated, truncated, info = wrapped.step(task.encode("joy")[0])
    assert truncated and not terminated  # three tokens, no EOS: the penalty applies
    expected = model.score(rm_tokens([prompt + good + task.encode("joy")], env.max_len))[0].item()
    assert info["rm_score"] == pytest.approx(expected)
    assert (
        info["gold_score"] == pytest.approx(task.score(prompt, good + task.encode("joy")))
        and info["gold_score"] > 0.5
    )
    assert reward == pytest.approx(expected - 0.5)
    assert info["grammatical"] == 1.0  # "i loved the joy": VERB the NOUN
    wrapped.reset(seed=1)
    for token in task.encode("the the the"):
        info = wrapped.step(token)[4]
    assert info["grammatical"] == 0.0


# ------------------------------------------------------------------------------ end to end


def test_offline_stages_run_and_a_rerun_skips_them(tmp_path, capsys) -> None:
    config = load_config(
        "configs/token_sentiment.yaml",
        [f"run_dir={tmp_path}", "rlhf.sft_steps=40", "network.d_model=32", "network.n_layers=1"],
    )
    pipeline = PipelineConfig(
        corpus_size=200,
        rm_pairs=64,
        rm_held_out_pairs=32,
        rm_steps=10,
        rm_batch_size=16,
        eval_samples_per_prompt=4,
    )
    stages = ("corpus", "sft", "reward_model", "eval")
    summaries = run_pipeline(config, pipeline, progress=False, stages=stages)
    assert summaries["sft"]["loss"] < summaries["sft"]["initial_loss"]
    assert 0.0 <= summaries["reward_model"]["held_out_accuracy"] <= 1.0
    assert set(summaries["eval"]["sft"]) >= {"gold_reward", "rm_score", "kl_to_sft", "fluency"}
    assert summaries["eval"]["sft"]["kl_to_sft"] == pytest.approx(0.0, abs=1e-5)  # π = π_SFT
    assert "gold_reward" in capsys.readouterr().out  # the printed table
    assert list((tmp_path / "eval" / "sft").glob("events.out.tfevents.*"))
    markers = {s: (stage_dir(tmp_path, s) / DONE_MARKER).stat().st_mtime_ns for s in stages}
    assert run_pipeline(config, pipeline, progress=False, stages=stages) == json.loads(json.dumps(summaries))
    assert {s: (stage_dir(tmp_path, s) / DONE_MARKER).stat().st_mtime_ns for s in stages} == markers


def test_sampled_completions_start_with_their_prompt_and_stop_at_eos(task) -> None:
    torch.manual_seed(0)
    model = TransformerActorCritic(
        len(task.vocab), task.max_prompt_len + 4, d_model=16, n_layers=1, n_heads=2
    )
    prompts = [task.encode("i"), task.encode("the movie was")]
    sequences = sample_completions(model, prompts, 4, seed=1)
    assert sequences == sample_completions(model, prompts, 4, seed=1)  # seeded
    for prompt, sequence in zip(prompts, sequences):
        assert sequence[: len(prompt)] == prompt and len(sequence) <= len(prompt) + 4
        assert EOS_ID not in sequence[:-1] and PAD_ID not in sequence
