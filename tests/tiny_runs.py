"""Tiny training runs for the evaluation, enjoy and plot tests, each trained once per session.

They only need to be real run dirs (config.yaml, checkpoints, event files) holding a network of
the right shape, so they train one or two updates, single-threaded (the test machines are shared).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agents.config import config_from_dict
from agents.run.trainer import train

TINY_CONFIGS: dict[str, dict] = {
    "cartpole": {
        "env_id": "CartPole-v1",
        "seed": 1,
        "total_timesteps": 256,
        "env": {"num_envs": 2},
        "ppo": {"num_steps": 64, "num_minibatches": 2, "update_epochs": 2},
    },
    "breakout": {
        "env_id": "BreakoutNoFrameskip-v4",
        "seed": 1,
        "total_timesteps": 128,
        "precision": "fp32",
        "env": {"num_envs": 2, "vectorization": "sync"},
        "ppo": {"num_steps": 64, "num_minibatches": 1, "update_epochs": 1},
    },
}
TINY_CONFIGS["cartpole_seed2"] = {**TINY_CONFIGS["cartpole"], "seed": 2}
TINY_CONFIGS["cartpole_other_lr"] = {
    **TINY_CONFIGS["cartpole"],
    "ppo": {**TINY_CONFIGS["cartpole"]["ppo"], "learning_rate": 1e-4},
}

_trained: dict[str, Path] = {}


def tiny_run(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """The run dir of TINY_CONFIGS[name], trained on first use."""
    if name not in _trained:
        run_dir = tmp_path_factory.mktemp(name) / "run"
        config = config_from_dict({**TINY_CONFIGS[name], "torch_threads": 1, "run_dir": str(run_dir)})
        threads = torch.get_num_threads()
        try:
            train(config, config_name=name, progress=False)
        finally:
            torch.set_num_threads(threads)  # train() sets it for the whole process
        _trained[name] = run_dir
    return _trained[name]
