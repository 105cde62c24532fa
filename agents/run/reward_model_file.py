"""Reward models on disk, and the env they score: the entry point of TokenGen/SentimentRM-v0
(registered by name in envs/registry.py)."""

from __future__ import annotations

import functools
from pathlib import Path

from agents.rlhf.reward_model import RewardModel, RewardModelEnv
from agents.run.checkpoint import load_checkpoint, save_checkpoint
from envs.token_generation import TokenGenerationEnv
from envs.token_tasks import SentimentTask


def save_reward_model(path: Path, model: RewardModel) -> None:
    save_checkpoint(path, {"model": model.state_dict(), "architecture": model.architecture()})


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
