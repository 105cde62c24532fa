"""Resuming a run: which checkpoint to continue from, with which config, and the training state
that lives outside the networks (random generators, the env reset seed).

What a checkpoint cannot hold is the middle of the episodes being played: a gym env's state is
not saveable in general. A resumed run re-creates its envs and resets them with a seed derived
from (seed, update), so its in-progress episodes restart, as in every RL library; given the
checkpoint, the continuation is deterministic.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import (
    ConfigError,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    flatten_dict,
    read_yaml_config,
    upgrade_saved_config,
)
from agents.run.checkpoint import (
    FINAL_CHECKPOINT,
    CheckpointError,
    checkpoint_config,
    load_checkpoint,
    update_checkpoints,
)
from agents.run.run_dir import CHECKPOINT_DIR, CONFIG_FILE

RESUME_KEYS = ("model", "optimizer", "config", "update", "global_step", "resume")
# What `--resume RUN key=value` may change: a run goes on as it started, only for longer or
# elsewhere (the algorithm is the same on any device).
EXTENDABLE_KEYS = ("total_timesteps", "device")


@dataclass
class SkippedCheckpoint:
    path: Path
    reason: str
    corrupt: bool  # unreadable or failing its checksum
    # Renamed with this suffix once the resume goes ahead (corrupt, or newer than the checkpoint
    # chosen), so that pruning and later resumes never count it again; None: left as it is.
    aside: str | None = None


@dataclass
class ResumePoint:
    """The newest good checkpoint of a run dir, with the run's config."""

    run_dir: Path
    config: TrainConfig
    checkpoint: Path
    state: dict[str, Any]
    skipped: list[SkippedCheckpoint] = field(default_factory=list)  # newer checkpoints that were unusable
    extended: bool = False  # total_timesteps or device changed on resuming: config.yaml is rewritten

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
    """Flat dotted view of a config, run_dir (a run dir may move) and EXTENDABLE_KEYS left out."""
    flat = flatten_dict(config_to_dict(config))
    for key in ("run_dir", *EXTENDABLE_KEYS):
        flat.pop(key, None)
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


def find_resume_point(path: Path) -> ResumePoint:
    """The run's config and its newest checkpoint that loads and passes its checksum; newer ones
    that do not are listed in `skipped`. `path` is a run dir, or one of its checkpoints: the run
    then goes on from that one, and the newer checkpoints are skipped (set aside as superseded
    once the resume goes ahead). Reads only: nothing in the run dir changes."""
    path = Path(path)
    chosen = None
    if path.is_file():
        chosen, run_dir = path, path.parent.parent
        if path.parent.name != CHECKPOINT_DIR or not (run_dir / CONFIG_FILE).is_file():
            raise CheckpointError(f"--resume {path}: a checkpoint must lie in RUN_DIR/{CHECKPOINT_DIR}/")
    else:
        run_dir = path
    if not run_dir.is_dir():
        raise CheckpointError(f"--resume {run_dir}: no such run dir")
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise CheckpointError(f"{run_dir} is not a run dir (no {CONFIG_FILE}); start a run with --config")
    try:
        config = config_from_dict(upgrade_saved_config(read_yaml_config(config_path)))
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
    if chosen is not None:
        resolved = [c.resolve() for c in candidates]
        if chosen.resolve() not in resolved:
            raise CheckpointError(f"--resume {chosen}: not a checkpoint of {run_dir} (final.pt, update_*.pt)")
        newer = candidates[: resolved.index(chosen.resolve())]
        skipped = [
            SkippedCheckpoint(p, f"{p} is newer than {chosen.name}", corrupt=False, aside=".superseded")
            for p in newer
        ]
        candidates = [chosen]
    for path in candidates:
        try:
            state = load_checkpoint(path)
        except CheckpointError as exc:
            skipped.append(SkippedCheckpoint(path, str(exc), corrupt=True, aside=".corrupt"))
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


def extend_run(point: ResumePoint, overrides: list[str]) -> ResumePoint:
    """`point` with the `--resume RUN key=value` overrides applied: a larger total_timesteps (to
    train a run further) and another device (a CUDA run goes on on a CPU); anything else is
    refused, as is a total that does not grow."""
    data = apply_overrides({}, overrides)
    refused = sorted(set(flatten_dict(data)) - set(EXTENDABLE_KEYS))
    if refused:
        raise ConfigError(
            f"--resume continues a run with the config it started with: {', '.join(refused)} cannot "
            f"change (only {', '.join(EXTENDABLE_KEYS)} may)"
        )
    if not data:
        return point
    config = config_from_dict({**config_to_dict(point.config), **data})
    if "total_timesteps" in data and config.total_timesteps <= point.config.total_timesteps:
        raise ConfigError(
            f"total_timesteps={config.total_timesteps}: a resumed run can only be extended beyond its "
            f"{point.config.total_timesteps}"
        )
    point.config, point.extended = config, True
    return point


def with_total_timesteps(point: ResumePoint, total_timesteps: int) -> ResumePoint:
    """`point` set to train until `total_timesteps` (its config.yaml rewritten when it goes ahead)."""
    point.config = config_from_dict({**config_to_dict(point.config), "total_timesteps": total_timesteps})
    point.extended = True
    return point


def env_reset_seed(seed: int, update: int) -> int:
    """The seed of the env reset at the start of a run (`seed` itself) or of its resumption after
    `update` updates (a seed drawn from (seed, update)): two resumes from one checkpoint play the
    same games, and no resume replays the games of the run's start."""
    if update == 0:
        return seed
    # Below 2**31: envpool (and some envs) take their seeds as int32.
    return int(np.random.SeedSequence([seed % 2**32, update]).generate_state(1)[0]) % 2**31


def report_skipped_checkpoints(point: ResumePoint) -> None:
    """What a resume does to the run dir once every check has passed: report and set aside the
    checkpoints it skipped, and drop writes cut short by the crash."""
    for skipped in point.skipped:
        aside = ""
        if skipped.aside:
            aside_path = skipped.path.with_name(skipped.path.name + skipped.aside)
            skipped.path.replace(aside_path)
            aside = f" (moved to {aside_path.name})"
        print(f"warning: {skipped.reason}; skipped{aside}", file=sys.stderr)
    if point.skipped:
        print(f"warning: resuming from the previous good checkpoint {point.checkpoint}", file=sys.stderr)
    for stale in (point.run_dir / CHECKPOINT_DIR).glob("*.pt.tmp"):
        stale.unlink(missing_ok=True)
