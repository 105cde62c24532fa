"""The whole RLHF pipeline offline, as resumable stages in one run dir (issue 6).

Stages, each writing its outputs and then a `done` marker into run_dir/stages/<name>/:
1. corpus        distinct grammar sentences of mixed sentiment, train / held-out split
                 (envs/sentiment_corpus.py), and a seeded split of the prompts: the evaluation
                 prompts are never used by the reward model's training pairs or by PPO.
2. sft           the transformer trained by cross-entropy on the train sentences (agents/sft.py).
3. reward_model  preference pairs: two SFT samples per prompt, the higher gold score (VADER
                 compound) preferred, optional label noise; Bradley–Terry training
                 (agents/reward_model.py); pairwise accuracy on pairs of the evaluation prompts.
4. ppo           PPO-ptx against the reward model: the env's reward is replaced by r_θ at the end
                 of each completion (`RewardModelEnv`), the per-token KL to the SFT policy is the
                 trainer's, the ptx term γ_ptx·LL(corpus) is added per minibatch (agents/ptx.py).
5. eval          evaluation prompts, SFT vs PPO policy: gold reward, RM score, KL to SFT, fluency
                 (grammar acceptance, SFT perplexity of samples), as TensorBoard scalars eval/*
                 (run_dir/eval/<policy>) and a printed table.

A rerun skips every stage whose `done` marker exists (the marker holds the stage's summary, so
skipped stages still report their numbers); a stage without one starts over from an empty
directory (what is there may be half-written), except the PPO stage, which resumes its training
run from the newest good checkpoint.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from agents.build import build_agent
from agents.checkpoint import FINAL_CHECKPOINT, load_checkpoint, save_checkpoint
from agents.config import PipelineConfig, RLHFConfig, TrainConfig
from agents.resume import CHECKPOINT_DIR
from agents.reward_model import RewardModel, label_pairs, pairwise_accuracy, rm_tokens, train_reward_model
from agents.sft import completion_cross_entropy, demonstration_batch, sft_train
from agents.transformer import TransformerActorCritic
from envs.sentiment_corpus import (
    CorpusTask, SentimentCorpus, SentimentGrammar, build_corpus, grammar_accepts, split_prompts,
)
from envs.token_generation import TokenGenerationEnv
from envs.token_tasks import EOS_ID, PAD_ID, SentimentTask
from envs.vector import make_single_env

STAGES_DIR = "stages"
DONE_MARKER = "done"
STAGES = ("corpus", "sft", "reward_model", "ppo", "eval")
RM_ENV_ID = "TokenGen/SentimentRM-v0"


# --------------------------------------------------------------------------------------------
# Stage caching
# --------------------------------------------------------------------------------------------


def stage_dir(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / STAGES_DIR / name


def stage_done(run_dir: Path, name: str) -> bool:
    return (stage_dir(run_dir, name) / DONE_MARKER).is_file()


def run_stage(
    run_dir: Path,
    name: str,
    work: Callable[[Path], dict[str, Any]],
    keep_partial: bool = False,
    upstream: Sequence[str] = (),
) -> dict[str, Any]:
    """Run `work(stage directory)` unless the stage is done and fresh; return its summary.

    Done: its `done` marker exists. The marker is written last and atomically (temp file +
    rename), holding `work`'s JSON summary, so a crash anywhere inside `work` leaves no marker
    and the next run redoes the stage; the summary gains the stage's wall time, wall_time_s.
    Fresh (the rule of make): the marker is not older than the marker of any finished `upstream`
    stage, so e.g. an evaluation done before the PPO stage existed is redone once PPO has finished.
    Without `keep_partial` the directory is emptied before `work` runs, so no half-written file of
    a crashed attempt is mistaken for an output (with it, `work` finds what a crashed attempt
    left, e.g. training checkpoints to resume from; a stale stage is always emptied).
    """
    directory = stage_dir(run_dir, name)
    marker = directory / DONE_MARKER
    if marker.is_file():
        upstream_markers = [stage_dir(run_dir, u) / DONE_MARKER for u in upstream]
        newest = max((m.stat().st_mtime_ns for m in upstream_markers if m.is_file()), default=0)
        if marker.stat().st_mtime_ns >= newest:
            return json.loads(marker.read_text())
        marker.unlink()
        keep_partial = False  # its outputs were built from older inputs: none of them is reused
    if directory.exists() and not keep_partial:
        shutil.rmtree(directory)
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary = {**work(directory), "wall_time_s": time.perf_counter() - started}
    tmp = marker.with_name(DONE_MARKER + ".tmp")
    tmp.write_text(json.dumps(summary, indent=2, sort_keys=True))
    os.replace(tmp, marker)
    return summary


# --------------------------------------------------------------------------------------------
# Sampling and scoring sequences
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_completions(
    model: TransformerActorCritic, prompts: Sequence[Sequence[int]], max_new_tokens: int, seed: int = 0
) -> list[list[int]]:
    """Prompt + sampled completion (+ EOS if the model ended it) per prompt, ancestral sampling
    at temperature 1 (what the KL and the env see), batched through the model's KV cache."""
    device = model.position_embedding.device
    batch = len(prompts)
    tokens = torch.full((batch, model.max_len), PAD_ID, dtype=torch.long, device=device)
    for i, prompt in enumerate(prompts):
        tokens[i, : len(prompt)] = torch.tensor(list(prompt), dtype=torch.long)
    lengths = torch.tensor([len(p) for p in prompts], device=device)
    if int(lengths.max()) + max_new_tokens > model.max_len:
        raise ValueError(f"prompt + {max_new_tokens} new tokens exceed the model's context {model.max_len}")
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for _ in range(max_new_tokens):
            action = model.act(tokens)[0]
            rows = (~done).nonzero().squeeze(1)
            tokens[rows, lengths[rows]] = action[rows]
            lengths[rows] += 1
            done[rows] |= action[rows] == EOS_ID
            if bool(done.all()):
                break
    model.train(was_training)
    return [tokens[i, : int(lengths[i])].tolist() for i in range(batch)]


def completion_of(sequence: Sequence[int], prompt_len: int) -> list[int]:
    """The completion tokens of prompt + completion (+ EOS), without EOS."""
    return [int(t) for t in sequence[prompt_len:] if int(t) != EOS_ID]


def completion_logprobs(
    model: TransformerActorCritic, sequences: Sequence[Sequence[int]], prompt_lens: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """log π(y_t | y_<t) of every generated token (EOS included): logp [B, L−1] and its mask."""
    device = model.position_embedding.device
    width = max(len(s) for s in sequences)
    tokens = torch.full((len(sequences), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for i, (sequence, start) in enumerate(zip(sequences, prompt_lens)):
        tokens[i, : len(sequence)] = torch.tensor(list(sequence))
        mask[i, start : len(sequence)] = True
    tokens, mask = tokens.to(device), mask.to(device)
    logits, _ = model.sequence_logits_and_values(tokens[:, :-1])
    logp = logits.log_softmax(-1).gather(2, tokens[:, 1:, None]).squeeze(2)
    return logp.masked_fill(~mask[:, 1:], 0.0), mask[:, 1:]


# --------------------------------------------------------------------------------------------
# The reward-model environment
# --------------------------------------------------------------------------------------------


def save_reward_model(path: Path, model: RewardModel) -> None:
    first = model.blocks[0]
    d_model = model.position_embedding.shape[1]
    architecture = {
        "vocab_size": model.vocab_size, "max_len": model.max_len, "d_model": d_model, "n_layers": len(model.blocks),
        "n_heads": first.attn.n_heads, "mlp_ratio": first.mlp[0].out_features // d_model, "pad_id": model.pad_id,
    }
    save_checkpoint(path, {"model": model.state_dict(), "architecture": architecture})


@functools.lru_cache(maxsize=4)
def load_reward_model(path: str) -> RewardModel:
    """One frozen reward model per file and process, shared by every env of a vector env."""
    state = load_checkpoint(Path(path))
    model = RewardModel(**state["architecture"])
    model.load_state_dict(state["model"])
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


class RewardModelEnv(gym.Wrapper):
    """Replaces the task's score in the final reward by the reward model's r_θ(prompt, completion).

    Final reward = r_θ + (env reward − gold score), i.e. the env's no-EOS penalty is kept. The
    gold score (VADER, the task's own) goes to info["gold_score"], r_θ to info["rm_score"], and
    1.0 / 0.0 to info["grammatical"] as the grammar accepts / rejects the sentence (fluency). With
    `prompts`, episodes draw their prompt from that list (seeded by reset(seed)), which keeps the
    evaluation prompts out of training.
    """

    def __init__(self, env: TokenGenerationEnv, reward_model: RewardModel, prompts: Sequence[Sequence[int]] | None = None):
        super().__init__(env)
        if reward_model.max_len < env.unwrapped.max_len:
            raise ValueError(f"reward model context {reward_model.max_len} < env sequence length {env.unwrapped.max_len}")
        self.reward_model = reward_model
        self.prompts = [list(map(int, p)) for p in prompts] if prompts else None
        self._prompt_rng = np.random.default_rng()

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        if seed is not None:
            self._prompt_rng = np.random.default_rng(seed)
        if self.prompts and not (options and options.get("prompt") is not None):
            options = {**(options or {}), "prompt": self.prompts[int(self._prompt_rng.integers(len(self.prompts)))]}
        return self.env.reset(seed=seed, options=options)

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            with torch.inference_mode():
                rm_score = float(self.reward_model.score(rm_tokens([obs], self.reward_model.max_len))[0])
            reward = rm_score + (reward - info["score"])
            info = {**info, "gold_score": info["score"], "rm_score": rm_score, "grammatical": float(grammar_accepts(obs))}
        return obs, reward, terminated, truncated, info


def make_reward_model_env(
    reward_model: str,
    max_new_tokens: int = 10,
    no_eos_penalty: float = 0.0,
    prompts: list[str] | None = None,
    render_mode: str | None = None,
) -> RewardModelEnv:
    """TokenGen/SentimentRM-v0: the sentiment env rewarded by the reward model saved at `reward_model`;
    `prompts` (texts) restricts the prompts episodes start from."""
    task = SentimentTask()
    env = TokenGenerationEnv(task, max_new_tokens, no_eos_penalty, render_mode)
    prompt_ids = [task.encode(p) for p in prompts] if prompts else None
    return RewardModelEnv(env, load_reward_model(str(reward_model)), prompt_ids)


if RM_ENV_ID not in gym.registry:
    gym.register(id=RM_ENV_ID, entry_point="agents.rlhf_pipeline:make_reward_model_env")


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_policy(
    policy: TransformerActorCritic,
    sft: TransformerActorCritic,
    reward_model: RewardModel,
    task: SentimentTask,
    grammar: SentimentGrammar,
    prompts: Sequence[Sequence[int]],
    samples_per_prompt: int,
    max_new_tokens: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Sample completions of `prompts` from `policy` and measure them.

    gold_reward: mean VADER compound; rm_score: mean r_θ; kl_to_sft: mean over completions of
    Σ_t log π(y_t|·) − log π_SFT(y_t|·), the k1 Monte-Carlo estimate of KL(π ‖ π_SFT) per
    completion (samples drawn from π at temperature 1, so it is unbiased); fluency: share of
    sentences the grammar accepts; sft_perplexity: exp of the mean per-token NLL under π_SFT.
    `gold_rewards` keeps every sample's score (the before/after-RL distribution).
    """
    batch = [list(p) for p in prompts for _ in range(samples_per_prompt)]
    prompt_lens = [len(p) for p in batch]
    sequences = sample_completions(policy, batch, max_new_tokens, seed)
    gold = [task.score(p, completion_of(s, n)) for p, s, n in zip(batch, sequences, prompt_lens)]
    rm_scores = reward_model.score(rm_tokens(sequences, reward_model.max_len).to(reward_model.position_embedding.device))
    logp, mask = completion_logprobs(policy, sequences, prompt_lens)
    sft_logp, _ = completion_logprobs(sft, sequences, prompt_lens)
    sft_nll = -(sft_logp.sum() / mask.sum()).item()
    return {
        "gold_reward": float(np.mean(gold)),
        "rm_score": float(rm_scores.mean()),
        "kl_to_sft": float((logp - sft_logp).sum(1).mean()),
        "fluency": float(np.mean([grammar.accepts(s) for s in sequences])),
        "sft_perplexity": math.exp(sft_nll),
        "length": float(np.mean([len(s) - n for s, n in zip(sequences, prompt_lens)])),
        "gold_rewards": gold,
        "samples": [task.decode(s) for s in sequences[:: max(1, samples_per_prompt)]],
    }


EVAL_SCALARS = ("gold_reward", "rm_score", "kl_to_sft", "fluency", "sft_perplexity", "length")


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per policy, one column per scalar."""
    header = f"{'policy':<8}" + "".join(f"{name:>15}" for name in EVAL_SCALARS)
    rows = [f"{policy:<8}" + "".join(f"{metrics[n]:>15.4f}" for n in EVAL_SCALARS) for policy, metrics in results.items()]
    return "\n".join([header, *rows])


# --------------------------------------------------------------------------------------------
# The stages
# --------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def _new_policy(config: TrainConfig) -> TransformerActorCritic:
    """The policy network of `config` for the sentiment env (the shape every stage shares)."""
    env = make_single_env(config.env_id, config.env)
    torch.manual_seed(config.seed)
    agent = build_agent(config, env.observation_space, int(env.action_space.n))
    env.close()
    if not isinstance(agent, TransformerActorCritic):
        raise ValueError("the RLHF pipeline needs network.kind transformer")
    return agent


def _load_policy(config: TrainConfig, path: Path) -> TransformerActorCritic:
    agent = _new_policy(config)
    agent.load_state_dict(load_checkpoint(path)["model"])
    agent.eval()
    return agent


def _max_new_tokens(config: TrainConfig) -> int:
    return int(config.env.kwargs.get("max_new_tokens", 10))


class RLHFPipeline:
    """The five stages over one run dir; `run()` does what is not done yet."""

    def __init__(self, config: TrainConfig, pipeline: PipelineConfig, run_dir: Path, progress: bool = True) -> None:
        self.config, self.pipeline, self.run_dir, self.progress = config, pipeline, Path(run_dir), progress
        self.task = SentimentTask()
        self.grammar = SentimentGrammar(self.task)

    def path(self, stage: str, name: str) -> Path:
        return stage_dir(self.run_dir, stage) / name

    def run(self, stages: Sequence[str] = STAGES) -> dict[str, dict[str, Any]]:
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise ValueError(f"unknown stages {sorted(unknown)}; stages are {STAGES}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(self.run_dir / "pipeline.json", {"pipeline": asdict(self.pipeline), "config": asdict(self.config)})
        summaries = {}
        for i, name in enumerate(STAGES):  # always in pipeline order, whatever order `stages` lists
            if name in stages:
                work = getattr(self, f"_{name}")
                marker = stage_dir(self.run_dir, name) / DONE_MARKER
                before = marker.stat().st_mtime_ns if marker.is_file() else None
                summaries[name] = run_stage(
                    self.run_dir, name, work, keep_partial=name == "ppo", upstream=STAGES[:i]
                )
                ran = marker.stat().st_mtime_ns != before
                if self.progress:
                    print(f"stage {name}: {'done' if ran else 'already done, skipped'} ({stage_dir(self.run_dir, name)})")
        if "eval" in summaries:
            print(summaries["eval"]["table"])  # also when the evaluation itself was skipped
        return summaries

    # 1 ---------------------------------------------------------------------------------------
    def _corpus(self, directory: Path) -> dict[str, Any]:
        p, seed = self.pipeline, self.config.seed
        corpus = build_corpus(self.task, p.corpus_size, p.held_out_fraction, seed)
        train_prompts, eval_prompts = split_prompts(self.task, p.eval_prompt_fraction, seed)
        _write_json(directory / "corpus.json", corpus.to_dict())
        _write_json(directory / "prompts.json", {"train": train_prompts, "eval": eval_prompts})
        gold = np.array([self.task.score([], s) for s in corpus.train])
        return {
            "train_sentences": len(corpus.train), "held_out_sentences": len(corpus.held_out),
            "train_prompts": len(train_prompts), "eval_prompts": len(eval_prompts),
            "positive_share": float(np.mean(gold > 0.05)), "negative_share": float(np.mean(gold < -0.05)),
        }

    def _load_corpus(self) -> SentimentCorpus:
        return SentimentCorpus.from_dict(_read_json(self.path("corpus", "corpus.json")))

    def _prompts(self) -> dict[str, list[list[int]]]:
        return _read_json(self.path("corpus", "prompts.json"))

    # 2 ---------------------------------------------------------------------------------------
    def _sft(self, directory: Path) -> dict[str, Any]:
        rlhf = self.config.rlhf
        corpus = self._load_corpus()
        policy = _new_policy(self.config)
        result = sft_train(
            policy, CorpusTask(self.task, corpus.train), rlhf.sft_steps, rlhf.sft_batch_size, rlhf.sft_learning_rate,
            seed=self.config.seed,
        )
        save_checkpoint(directory / "policy.pt", {"model": policy.state_dict()})
        held_out = CorpusTask(self.task, corpus.held_out)
        tokens, mask = demonstration_batch(held_out, 4 * len(corpus.held_out), np.random.default_rng(0), policy.max_len)
        with torch.no_grad():
            held_out_ce = float(completion_cross_entropy(policy, tokens, mask))
        return {"initial_loss": result["initial_loss"], "loss": result["loss"], "held_out_cross_entropy": held_out_ce}

    # 3 ---------------------------------------------------------------------------------------
    def _sample_pairs(self, policy: TransformerActorCritic, prompts: list[list[int]], count: int, seed: int, noise: float):
        """`count` prompts drawn from `prompts`, two SFT samples each, labelled by the gold judge."""
        rng = np.random.default_rng(seed)
        chosen = [prompts[int(i)] for i in rng.integers(len(prompts), size=count)]
        sequences = sample_completions(policy, chosen + chosen, _max_new_tokens(self.config), seed)
        scores = [self.task.score(p, completion_of(s, len(p))) for p, s in zip(chosen + chosen, sequences)]
        return label_pairs(
            sequences[:count], sequences[count:], scores[:count], scores[count:], policy.max_len, noise, rng
        )

    def _reward_model(self, directory: Path) -> dict[str, Any]:
        p, seed = self.pipeline, self.config.seed
        sft = _load_policy(self.config, self.path("sft", "policy.pt"))
        prompts = self._prompts()
        train_pairs = self._sample_pairs(sft, prompts["train"], p.rm_pairs, seed + 1, p.label_noise)
        held_out_pairs = self._sample_pairs(sft, prompts["eval"], p.rm_held_out_pairs, seed + 2, 0.0)
        reward_model = RewardModel.from_policy(sft)
        accuracy_before = pairwise_accuracy(reward_model, held_out_pairs)
        result = train_reward_model(
            reward_model, train_pairs, p.rm_steps, p.rm_batch_size, p.rm_learning_rate, seed=seed
        )
        save_reward_model(directory / "reward_model.pt", reward_model)
        return {
            "train_pairs": len(train_pairs), "held_out_pairs": len(held_out_pairs),
            "initial_loss": result["initial_loss"], "loss": result["loss"],
            "train_accuracy": result["train_accuracy"],
            "held_out_accuracy_before": accuracy_before,
            "held_out_accuracy": pairwise_accuracy(reward_model, held_out_pairs),
        }

    # 4 ---------------------------------------------------------------------------------------
    def ppo_config(self, directory: Path) -> TrainConfig:
        """The trainer's config for the PPO-ptx stage (needs the hooks listed in missing_hooks())."""
        config = copy.deepcopy(self.config)
        config.env_id = RM_ENV_ID
        config.env.kwargs = {
            **config.env.kwargs,
            "reward_model": str(self.path("reward_model", "reward_model.pt")),
            "prompts": [self.task.decode(p) for p in self._prompts()["train"]],
        }
        config.run_dir = str(directory / "run")
        config.rlhf.sft_steps = 0  # the policy starts from the SFT stage's weights instead
        config.rlhf.init_checkpoint = str(self.path("sft", "policy.pt"))
        config.rlhf.ptx_coef = self.pipeline.ptx_coef
        config.rlhf.ptx_batch_size = self.pipeline.ptx_batch_size
        config.rlhf.ptx_corpus = str(self.path("corpus", "corpus.json"))
        return config

    def _ppo(self, directory: Path) -> dict[str, Any]:
        missing = missing_hooks()
        if missing:
            raise RuntimeError(f"the PPO-ptx stage needs trainer hooks that are not there yet: {', '.join(missing)}")
        from agents.resume import find_resume_point
        from agents.trainer import train

        run = directory / "run"
        if any((run / CHECKPOINT_DIR).glob("*.pt")):  # a crashed attempt: go on from its checkpoint
            point = find_resume_point(run)
            result = train(point.config, "ppo", self.progress, resume=point)
        else:
            result = train(self.ppo_config(directory), "ppo", self.progress)
        return {"global_step": result.global_step, "mean_return": result.mean_return, "episodes": result.episodes}

    # 5 ---------------------------------------------------------------------------------------
    def _eval(self, directory: Path) -> dict[str, Any]:
        from torch.utils.tensorboard import SummaryWriter

        sft = _load_policy(self.config, self.path("sft", "policy.pt"))
        reward_model = load_reward_model(str(self.path("reward_model", "reward_model.pt")))
        policies = {"sft": (sft, 0)}
        final = stage_dir(self.run_dir, "ppo") / "run" / CHECKPOINT_DIR / FINAL_CHECKPOINT
        if stage_done(self.run_dir, "ppo") and final.is_file():
            state = load_checkpoint(final)
            policy = _new_policy(self.config)
            policy.load_state_dict(state["model"])
            policies["ppo"] = (policy.eval(), int(state.get("global_step", 1)))
        results = {}
        for name, (policy, step) in policies.items():
            metrics = evaluate_policy(
                policy, sft, reward_model, self.task, self.grammar, self._prompts()["eval"],
                self.pipeline.eval_samples_per_prompt, _max_new_tokens(self.config), seed=self.config.seed,
            )
            results[name] = metrics
            # One writer per policy under eval/: TensorBoard overlays SFT and PPO on the same tags.
            writer = SummaryWriter(log_dir=str(self.run_dir / "eval" / name))
            for scalar in EVAL_SCALARS:
                writer.add_scalar(f"eval/{scalar}", metrics[scalar], step)
            writer.add_histogram("eval/gold_reward_distribution", np.array(metrics["gold_rewards"]), step)
            writer.add_text("eval/samples", "\n\n".join(metrics["samples"]), step)
            writer.close()
        _write_json(directory / "eval.json", results)
        table = format_table(results)
        return {name: {k: m[k] for k in EVAL_SCALARS} for name, m in results.items()} | {"table": table}


def missing_hooks() -> list[str]:
    """Trainer / config hooks the PPO-ptx stage needs (see the report of issue 6)."""
    fields = RLHFConfig.__dataclass_fields__
    return [f"rlhf.{name}" for name in ("init_checkpoint", "ptx_coef", "ptx_batch_size", "ptx_corpus") if name not in fields]


def run_pipeline(
    config: TrainConfig,
    pipeline: PipelineConfig,
    config_name: str = "rlhf",
    progress: bool = True,
    stages: Sequence[str] = STAGES,
) -> dict[str, dict[str, Any]]:
    """Run the stages not yet done (train.py's entry point for pipeline configs).

    The run dir is config.run_dir, else runs/rlhf__<config name>__<seed>: no timestamp, so that
    running the same command again continues the same pipeline.
    """
    run_dir = Path(config.run_dir) if config.run_dir else Path("runs") / f"rlhf__{config_name}__{config.seed}"
    config.run_dir = str(run_dir)
    return RLHFPipeline(config, pipeline, run_dir, progress).run(stages)
