"""Checkpoints: written atomically with a checksum, loaded without unpickling arbitrary objects.

File layout: torch.save of {"format", "sha256", "payload"}, where payload is a uint8 tensor
holding the bytes of torch.save(state) and sha256 their digest. A truncated file fails to open,
a flipped byte fails the digest: either way a damaged checkpoint is detected instead of loaded
(resuming then falls back to the previous one, see agents/run/resume.py). Both layers are read with
torch.load(weights_only=True). Files of the older layout (the state itself, no checksum) still load.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from agents.config import ConfigError, TrainConfig, config_from_dict, upgrade_saved_config
from agents.networks.actor_critic import ActorCritic
from agents.networks.build import build_agent
from agents.run.run_dir import CHECKPOINT_DIR
from envs.space_codec import space_from_dict
from envs.vector import make_single_env

FORMAT = "agents-checkpoint/2"
FINAL_CHECKPOINT = "final.pt"
UPDATE_CHECKPOINT = re.compile(r"update_(\d+)\.pt")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; reported as one `error:` line."""


def mismatch_error(checkpoint: Path, exc: Exception) -> CheckpointError:
    """A checkpoint whose tensors do not fit the network its config builds, said in one line
    (torch lists every mismatching tensor on a line of its own)."""
    detail = " ".join(str(exc).split())[:300]
    return CheckpointError(f"{checkpoint} does not match the network of its config: {detail}")


def checkpoint_config(state: dict, checkpoint: Path) -> TrainConfig:
    """The training config a checkpoint was written with (keys of older versions renamed),
    checked like any config."""
    if not isinstance(state.get("config"), dict):
        raise CheckpointError(f"{checkpoint} holds no training config")
    try:
        return config_from_dict(upgrade_saved_config(state["config"]))
    except ConfigError as exc:
        raise CheckpointError(f"{checkpoint} holds an invalid config: {exc}") from None


def update_checkpoint_name(update: int) -> str:
    return f"update_{update:06d}.pt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write `state` (tensors, numbers, strings, lists, dicts) to `path` atomically.

    The file is written under a temporary name, flushed and fsynced, then renamed over the target
    (and the directory fsynced), so a crash mid-write never leaves a half-written checkpoint under
    the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getbuffer()
    wrapper = {
        "format": FORMAT,
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.from_numpy(np.frombuffer(payload, dtype=np.uint8).copy()),
    }
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(wrapper, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (POSIX: a rename lives in the directory's own blocks)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the data itself is synced
    finally:
        os.close(fd)


def _torch_load(source, path: Path, map_location) -> Any:
    try:
        return torch.load(source, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types on corrupt or crafted bytes; all mean "unusable"
        text = str(exc).strip()
        if "Weights only load failed" in text:
            reason = "it holds pickled objects other than tensors and plain data (refused unread)"
        else:  # torch's first sentence names the problem; the rest is generic advice
            reason = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
        raise CheckpointError(f"cannot load checkpoint {path}: {reason}") from None


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with torch.load(weights_only=True): plain data only, so a file crafted to
    run code when unpickled is refused instead of executed. The checksum is verified first."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    state = _torch_load(path, path, "cpu")
    if isinstance(state, dict) and state.get("format") == FORMAT:
        payload = state.get("payload")
        if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8 or payload.dim() != 1:
            raise CheckpointError(f"cannot load checkpoint {path}: malformed payload")
        data = payload.numpy().tobytes()
        if hashlib.sha256(data).hexdigest() != state.get("sha256"):
            raise CheckpointError(f"cannot load checkpoint {path}: checksum mismatch (the file is corrupt)")
        state = _torch_load(io.BytesIO(data), path, map_location)
    elif isinstance(state, dict) and str(map_location) != "cpu":
        state = _torch_load(path, path, map_location)  # an older file: no checksum to verify
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a checkpoint of this toolkit")
    return state


def update_checkpoints(directory: Path) -> dict[int, Path]:
    """The periodic checkpoints update_<N>.pt of a checkpoint dir, by update number N (not by name
    or mtime: names outgrow their zero padding, copies change mtimes)."""
    directory = Path(directory)
    if not directory.is_dir():
        return {}
    return {
        int(match.group(1)): p
        for p in directory.iterdir()
        if (match := UPDATE_CHECKPOINT.fullmatch(p.name)) and p.is_file()
    }


def prune_checkpoints(directory: Path, keep: int) -> None:
    """Delete all but the newest `keep` update_<N>.pt files (0: keep all); final.pt is never touched."""
    if keep <= 0:
        return
    numbered = update_checkpoints(directory)
    for update in sorted(numbered)[:-keep]:
        numbered[update].unlink(missing_ok=True)


def newest_checkpoint(path: Path) -> Path:
    """The checkpoint file `path` names: the file itself, or a run dir's final.pt, else its
    update_<N>.pt of the highest N."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f"no such run dir or checkpoint: {path}")
    checkpoints = path / CHECKPOINT_DIR
    if (checkpoints / FINAL_CHECKPOINT).is_file():
        return checkpoints / FINAL_CHECKPOINT
    numbered = update_checkpoints(checkpoints)
    if not numbered:
        raise CheckpointError(f"no checkpoint in {checkpoints} (neither {FINAL_CHECKPOINT} nor update_*.pt)")
    return numbered[max(numbered)]


def checkpoint_spaces(state: dict, config: TrainConfig) -> tuple[gym.Space, gym.Space, gym.Space | None]:
    """(what the network reads, the actions, what the game itself observes where that differs)
    of a checkpoint: stored in it, or for one written before checkpoints held their spaces, asked
    of the env its config makes."""
    spaces = state.get("spaces")
    if spaces is None:
        env = make_single_env(config.env_id, config.env)
        observation_space, action_space = env.observation_space, env.action_space
        env.close()
        return observation_space, action_space, None
    source = spaces.get("source_observation")
    return (
        space_from_dict(spaces["observation"]),
        space_from_dict(spaces["action"]),
        space_from_dict(source) if source else None,
    )


def load_agent(checkpoint_path: Path, device: str | torch.device = "cpu") -> tuple[ActorCritic, TrainConfig]:
    """Rebuild the agent of a checkpoint (architecture from its saved config) and load its weights."""
    state = load_checkpoint(checkpoint_path, map_location=device)
    config = checkpoint_config(state, checkpoint_path)
    observation_space, action_space, _ = checkpoint_spaces(state, config)
    agent = build_agent(config, observation_space, action_space)
    try:
        agent.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise mismatch_error(checkpoint_path, exc) from None
    return agent.to(device), config
