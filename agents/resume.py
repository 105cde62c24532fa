"""Resuming a run: which checkpoint to continue from, with which config, and the training state
that lives outside the networks (random generators, the env reset seed).

What a checkpoint cannot hold is the middle of the episodes being played: a gym env's state is
not saveable in general. A resumed run re-creates its envs and resets them with a seed derived
from (seed, update), so its in-progress episodes restart, as in every RL library; given the
checkpoint, the continuation is deterministic.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.checkpoint import (
    FINAL_CHECKPOINT,
    CheckpointError,
    checkpoint_config,
    load_checkpoint,
    update_checkpoints,
)
from agents.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    config_to_dict,
    flatten_dict,
    read_yaml_config,
)

CHECKPOINT_DIR = "checkpoints"
CONFIG_FILE = "config.yaml"
RESUME_KEYS = ("model", "optimizer", "config", "update", "global_step", "resume")


@dataclass
class SkippedCheckpoint:
    path: Path
    reason: str
    corrupt: bool  # unreadable or failing its checksum (moved aside once the resume goes ahead)


@dataclass
class ResumePoint:
    """The newest good checkpoint of a run dir, with the run's config."""

    run_dir: Path
    config: TrainConfig
    checkpoint: Path
    state: dict[str, Any]
    skipped: list[SkippedCheckpoint] = field(default_factory=list)  # newer checkpoints that were unusable

    @property
    def global_step(self) -> int:
        return int(self.state["global_step"])

    @property
    def update(self) -> int:
        return int(self.state["update"])

    @property
    def finished(self) -> bool:
        return self.checkpoint.name == FINAL_CHECKPOINT and self.global_step >= self.config.total_timesteps


def _candidates(checkpoint_dir: Path) -> list[Path]:
    """Newest first: final.pt, then update_<N>.pt by decreasing N."""
    numbered = update_checkpoints(checkpoint_dir)
    paths = [numbered[n] for n in sorted(numbered, reverse=True)]
    final = checkpoint_dir / FINAL_CHECKPOINT
    return ([final] if final.is_file() else []) + paths


def _normalised(config: TrainConfig) -> dict:
    """Flat dotted view of a config, run_dir left out (a run dir may move)."""
    flat = flatten_dict(config_to_dict(config))
    flat.pop("run_dir", None)
    return flat


def check_same_run(state: dict, config: TrainConfig, checkpoint: Path, config_path: Path) -> None:
    """Refuse a checkpoint written with another config (other env, network, algorithm...) than
    the run's config.yaml: resuming continues one run unchanged."""
    saved = _normalised(checkpoint_config(state, checkpoint))
    current = _normalised(config)
    for key in sorted(set(saved) | set(current)):
        if saved.get(key) != current.get(key):
            raise CheckpointError(
                f"{checkpoint} was written with {key}={saved.get(key)!r} but {config_path} has "
                f"{key}={current.get(key)!r}: --resume continues a run with the config it started with"
            )


def find_resume_point(run_dir: Path) -> ResumePoint:
    """The run's config and its newest checkpoint that loads and passes its checksum; newer ones
    that do not are listed in `skipped`. Reads only: nothing in the run dir changes."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"--resume {run_dir}: no such run dir")
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir} is not a run dir (no {CONFIG_FILE}); start a run with --config")
    try:
        config = config_from_dict(read_yaml_config(config_path))
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    config.run_dir = str(run_dir)
    candidates = _candidates(run_dir / CHECKPOINT_DIR)
    if not candidates:
        raise CheckpointError(
            f"{run_dir} has no checkpoint to resume from ({CHECKPOINT_DIR}/ holds neither "
            f"{FINAL_CHECKPOINT} nor update_*.pt); start it again with --config"
        )
    skipped: list[SkippedCheckpoint] = []
    for path in candidates:
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            skipped.append(SkippedCheckpoint(path, str(exc), corrupt=True))
            continue
        missing = [key for key in RESUME_KEYS if key not in state]
        if missing:
            reason = f"{path} cannot be resumed: it lacks {', '.join(missing)} (written by an older version?)"
            skipped.append(SkippedCheckpoint(path, reason, corrupt=False))
            continue
        check_same_run(state, config, path, config_path)
        return ResumePoint(run_dir, config, path, state, skipped)
    reasons = "; ".join(s.reason for s in skipped)
    raise CheckpointError(f"no usable checkpoint in {run_dir / CHECKPOINT_DIR}: {reasons}")


def env_reset_seed(seed: int, update: int) -> int:
    """The seed of the env reset at the start of a run (`seed` itself) or of its resumption after
    `update` updates (a seed drawn from (seed, update)): two resumes from one checkpoint play the
    same games, and no resume replays the games of the run's start."""
    if update == 0:
        return seed
    # Below 2**31: envpool (and some envs) take their seeds as int32.
    return int(np.random.SeedSequence([seed % 2**32, update]).generate_state(1)[0]) % 2**31


# ------------------------------------------------------------------------ random generators


def capture_rng(minibatch: torch.Generator, prompts: np.random.Generator, device: torch.device) -> dict:
    """Every generator training draws from, as data torch.load(weights_only=True) accepts
    (tensors, lists, ints, floats, strings: no pickled numpy or Python objects)."""
    version, mt_state, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": {"version": version, "state": list(mt_state), "gauss_next": gauss_next},
        "numpy": {
            "name": name,
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
        "minibatch": minibatch.get_state(),
        # PCG64: {"bit_generator": "PCG64", "state": {"state": int, "inc": int}, "has_uint32": int, ...}
        "prompts": prompts.bit_generator.state,
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, minibatch: torch.Generator, prompts: np.random.Generator) -> None:
    python, numpy_state = state["python"], state["numpy"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    np.random.set_state(
        (
            numpy_state["name"],
            np.asarray(numpy_state["keys"], dtype=np.uint32),
            numpy_state["pos"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    minibatch.set_state(state["minibatch"])
    prompts.bit_generator.state = state["prompts"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
