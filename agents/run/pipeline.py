"""The whole RLHF pipeline offline, as resumable stages in one run dir (issue 6).

Stages, each writing its outputs and then a `done` marker into run_dir/stages/<name>/:
1. corpus        distinct grammar sentences of mixed sentiment, train / held-out split
                 (envs/sentiment_corpus.py), and a seeded split of the prompts: the evaluation
                 prompts are never used by the reward model's training pairs or by PPO.
2. sft           the transformer trained by cross-entropy on the train sentences (agents/rlhf/sft.py).
3. reward_model  preference pairs: two SFT samples per prompt, the higher gold score (VADER
                 compound) preferred, optional label noise; Bradley–Terry training
                 (agents/rlhf/reward_model.py); pairwise accuracy on pairs of the evaluation prompts.
4. ppo           PPO-ptx against the reward model: the env's reward is replaced by r_θ at the end
                 of each completion (`RewardModelEnv`, agents/rlhf/reward_model.py), the per-token
                 KL to the SFT policy is the trainer's, the ptx term γ_ptx·LL(corpus) is added per
                 minibatch (agents/rlhf/ptx.py).
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
import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from agents.config import PipelineConfig, TrainConfig
from agents.networks.build import build_agent
from agents.networks.transformer import TransformerActorCritic
from agents.rlhf.evaluation import (
    EVAL_SCALARS,
    completion_of,
    evaluate_policy,
    format_table,
    sample_completions,
)
from agents.rlhf.reward_model import RewardModel, label_pairs, pairwise_accuracy, train_reward_model
from agents.rlhf.sft import completion_cross_entropy, demonstration_batch, sft_train
from agents.run.checkpoint import FINAL_CHECKPOINT, load_checkpoint, save_checkpoint
from agents.run.resume import find_resume_point
from agents.run.reward_model_file import load_reward_model, save_reward_model
from agents.run.run_dir import CHECKPOINT_DIR
from agents.run.stages import DONE_MARKER, EVAL_DIR, PPO_RUN, STAGES, run_stage, stage_dir, stage_done
from agents.run.trainer import train
from envs.registry import REWARD_MODEL_ENV_ID
from envs.sentiment_corpus import CorpusTask, SentimentCorpus, SentimentGrammar, build_corpus, split_prompts
from envs.token_tasks import SentimentTask
from envs.vector import make_single_env


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
    agent = build_agent(config, env.observation_space, env.action_space)
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

    def __init__(
        self, config: TrainConfig, pipeline: PipelineConfig, run_dir: Path, progress: bool = True
    ) -> None:
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
        _write_json(
            self.run_dir / "pipeline.json", {"pipeline": asdict(self.pipeline), "config": asdict(self.config)}
        )
        summaries = {}
        for i, name in enumerate(STAGES):  # always in pipeline order, whatever order `stages` lists
            if name in stages:
                work = getattr(self, f"_{name}")
                marker = stage_dir(self.run_dir, name) / DONE_MARKER
                before = marker.stat().st_mtime_ns if marker.is_file() else None
                if self.progress is not None and before is None:
                    print(f"stage {name}: running", flush=True)  # the phases before RL show too
                summaries[name] = run_stage(
                    self.run_dir, name, work, keep_partial=name == "ppo", upstream=STAGES[:i]
                )
                ran = marker.stat().st_mtime_ns != before
                if self.progress is not None:
                    status = "done" if ran else "already done, skipped"
                    print(f"stage {name}: {status} ({stage_dir(self.run_dir, name)})")
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
            policy,
            CorpusTask(self.task, corpus.train),
            rlhf.sft_steps,
            rlhf.sft_batch_size,
            rlhf.sft_learning_rate,
            seed=self.config.seed,
        )
        save_checkpoint(directory / "policy.pt", {"model": policy.state_dict()})
        held_out = CorpusTask(self.task, corpus.held_out)
        tokens, mask = demonstration_batch(
            held_out, 4 * len(corpus.held_out), np.random.default_rng(0), policy.max_len
        )
        with torch.no_grad():
            held_out_ce = float(completion_cross_entropy(policy, tokens, mask))
        return {
            "initial_loss": result["initial_loss"],
            "loss": result["loss"],
            "held_out_cross_entropy": held_out_ce,
        }

    # 3 ---------------------------------------------------------------------------------------
    def _sample_pairs(
        self, policy: TransformerActorCritic, prompts: list[list[int]], count: int, seed: int, noise: float
    ):
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
        """The trainer's config for the PPO-ptx stage: the reward-model env on the training prompts,
        the policy started from the SFT stage, the ptx term over the corpus stage's sentences."""
        config = copy.deepcopy(self.config)
        config.env_id = REWARD_MODEL_ENV_ID
        config.env.kwargs = {
            **config.env.kwargs,
            "reward_model": str(self.path("reward_model", "reward_model.pt")),
            "prompts": [self.task.decode(p) for p in self._prompts()["train"]],
        }
        config.run_dir = str(self.run_dir / PPO_RUN)
        config.rlhf.sft_steps = 0  # the policy starts from the SFT stage's weights instead
        config.rlhf.init_checkpoint = str(self.path("sft", "policy.pt"))
        config.rlhf.ptx_corpus = str(self.path("corpus", "corpus.json"))
        return config

    def _ppo(self, directory: Path) -> dict[str, Any]:
        run = self.run_dir / PPO_RUN
        if any((run / CHECKPOINT_DIR).glob("*.pt")):  # a crashed attempt: go on from its checkpoint
            point = find_resume_point(run)
            result = train(point.config, "ppo", self.progress, resume=point)
        else:
            # An attempt that crashed before its first checkpoint left nothing to go on from; a new
            # run may not reuse a run dir that holds one, so its remains go.
            if run.exists():
                shutil.rmtree(run)
            result = train(self.ppo_config(directory), "ppo", self.progress)
        return {
            "global_step": result.global_step,
            "mean_return": result.mean_return,
            "episodes": result.episodes,
        }

    # 5 ---------------------------------------------------------------------------------------
    def _eval(self, directory: Path) -> dict[str, Any]:
        sft = _load_policy(self.config, self.path("sft", "policy.pt"))
        reward_model = load_reward_model(str(self.path("reward_model", "reward_model.pt")))
        policies = {"sft": (sft, 0)}
        final = self.run_dir / PPO_RUN / CHECKPOINT_DIR / FINAL_CHECKPOINT
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
            writer = SummaryWriter(log_dir=str(self.run_dir / EVAL_DIR / name))
            for scalar in EVAL_SCALARS:
                writer.add_scalar(f"eval/{scalar}", metrics[scalar], step)
            writer.add_histogram("eval/gold_reward_distribution", np.array(metrics["gold_rewards"]), step)
            writer.add_text("eval/samples", "\n\n".join(metrics["samples"]), step)
            writer.close()
        _write_json(directory / "eval.json", results)
        table = format_table(results)
        return {name: {k: m[k] for k in EVAL_SCALARS} for name, m in results.items()} | {"table": table}


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
