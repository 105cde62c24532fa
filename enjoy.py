"""Watch a trained agent play whole games:

    python enjoy.py RUN_DIR_OR_CHECKPOINT [--episodes N] [--video-dir DIR] [--deterministic] [--seed S]

RUN_DIR means RUN_DIR/checkpoints/final.pt, or the newest update_*.pt there when training has
not finished. Games are played with evaluation semantics (agents/run/evaluation.py: an Atari episode
is one whole game, scored raw). Prints one row per episode, then as the last line
`mean_return=<x> std=<y> episodes=<N>` (std over the N episodes, population formula).
With --video-dir, writes DIR/episode_<i>.mp4 per episode (the game's original RGB screen).
"""

from __future__ import annotations

import argparse
import os
import sys
import zipfile
from pathlib import Path
from typing import Any

from agents.run.cli import ArgumentParser, positive_int, seed_int


class EnjoyError(ValueError):
    """Bad input found before any game is played; reported as one `error:` line."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="run dir or checkpoint file (.pt)")
    parser.add_argument("--episodes", type=positive_int, default=10, help="games to play (default 10)")
    parser.add_argument("--video-dir", type=Path, help="write one MP4 per episode into this directory")
    parser.add_argument("--deterministic", action="store_true", help="take the most likely action (argmax)")
    parser.add_argument("--seed", type=seed_int, default=0, help="episode i is seeded with S + i (default 0)")
    parser.add_argument(
        "--max-steps",
        type=positive_int,
        help="cut each episode after this many agent steps (marked truncated); default: whole games",
    )
    parser.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu", help="default cpu")
    parser.add_argument(
        "--env", metavar="ENV_ID",
        help="play this env id instead of the run's (e.g. module:MyGame-v0 for a run trained from Python "
        "on an env object, which no config can name)",
    )
    return parser.parse_args(argv)


def check_writable_dir(path: Path) -> None:
    """Raise EnjoyError unless `path` is, or can be created as, a writable directory.

    Creates nothing: bad input must leave no trace, and a video dir that cannot be written should
    be refused before minutes of play, not after.
    """
    path = path.absolute()
    if path.exists():
        if not path.is_dir():
            raise EnjoyError(f"--video-dir {path} exists and is not a directory")
        if not os.access(path, os.W_OK | os.X_OK):
            raise EnjoyError(f"--video-dir {path} is not writable")
        return
    ancestor = path.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise EnjoyError(f"cannot create --video-dir {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise EnjoyError(f"cannot create --video-dir {path}: {ancestor} is not writable")


def check_checkpoint_path(path: Path) -> None:
    """Refuse a file that is plainly no checkpoint (neither named .pt nor a zip archive, torch's
    file format) before torch reads it: torch's own complaint about such a file ("pop from empty
    list" for a YAML file) says nothing useful. A run's config.yaml is the usual slip, so its run
    dir is named."""
    if not path.is_file() or path.suffix == ".pt" or zipfile.is_zipfile(path):
        return
    run_dir = path.parent
    hint = f"; to play its run, pass the run dir {run_dir}" if (run_dir / "config.yaml").is_file() else ""
    raise EnjoyError(f"{path} is not a checkpoint (.pt) or a run dir{hint}")


def format_row(index: int, episode: dict) -> str:
    row = f"episode={index} seed={episode['seed']} return={episode['return']:.2f} length={episode['length']}"
    if episode["truncated"]:
        row += " truncated"
    if "text" in episode:
        row += f" prompt={episode['prompt']!r} text={episode['text']!r}"
    if "video" in episode:
        row += f" video={episode['video']}"
    return row


def load_for_evaluation(args: argparse.Namespace) -> tuple[Path, Any, Any, dict | None]:
    """(checkpoint path, agent, config, normalisation statistics) after every check that bad input
    can fail: the video dir, the checkpoint file, its config, its env, its weights. Plays nothing
    and writes nothing."""
    from agents.config import ConfigError
    from agents.networks.build import resolve_device
    from agents.run.checkpoint import checkpoint_config, load_agent, load_checkpoint, newest_checkpoint
    from agents.run.evaluation import make_eval_env
    from envs.registry import is_token_env

    if args.video_dir is not None:
        check_writable_dir(args.video_dir)
    check_checkpoint_path(args.path)
    checkpoint = newest_checkpoint(args.path)
    state = load_checkpoint(checkpoint)
    config, normalization = checkpoint_config(state, checkpoint), state.get("normalization")
    if args.env is not None:
        config.env_id = args.env
    if args.video_dir is not None and is_token_env(config.env_id):
        raise EnjoyError(f"{config.env_id} episodes are texts, not videos; drop --video-dir")
    try:
        make_eval_env(config, normalization=normalization).close()
    except ConfigError:
        raise  # an unknown env id, already worded for the user
    except Exception as exc:  # any failure of a third-party env constructor is the checkpoint's
        raise EnjoyError(f"cannot create env '{config.env_id}' of {checkpoint}: {exc}") from None
    agent, _ = load_agent(checkpoint, resolve_device(args.device))
    return checkpoint, agent, config, normalization


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Imported after parsing so that a bad command line is refused without torch's import time.
    import ale_py
    import numpy as np
    import torch

    from agents.config import ConfigError
    from agents.run.checkpoint import CheckpointError
    from agents.run.evaluation import play_episodes

    # Offscreen rgb_array rendering only: pygame (CartPole's renderer) needs neither a display nor
    # a sound device, and would otherwise complain about a missing XDG_RUNTIME_DIR on stderr.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no ALE banner between the rows
    torch.set_num_threads(1)  # batches of one observation: more threads only add synchronisation

    try:
        checkpoint, agent, config, normalization = load_for_evaluation(args)
    except (EnjoyError, CheckpointError, ConfigError) as exc:
        # One line, whatever the message: torch's state_dict mismatch reports span several.
        print("error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 2

    print(f"checkpoint={checkpoint} env={config.env_id} deterministic={args.deterministic}")
    episodes = play_episodes(
        agent,
        config,
        args.episodes,
        args.seed,
        args.deterministic,
        args.video_dir,
        device=next(agent.parameters()).device,
        max_steps=args.max_steps,
        normalization=normalization,
        on_episode=lambda index, episode: print(format_row(index, episode), flush=True),
    )
    returns = np.array([episode["return"] for episode in episodes])
    print(f"mean_return={returns.mean():.2f} std={returns.std():.2f} episodes={len(returns)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
