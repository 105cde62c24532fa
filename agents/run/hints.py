"""Commands the toolkit prints for the user to type next (resume a run, replay it, see its curves)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from agents.run.run_dir import CHECKPOINT_DIR, VIDEO_DIR


def _as_typed(program: Path) -> str:
    """A program of the venv as the user can type it from here: relative to the working directory
    where it lies beneath it, its bare name in an activated venv."""
    if os.environ.get("VIRTUAL_ENV") and Path(os.environ["VIRTUAL_ENV"]) in program.parents:
        return program.name
    try:
        return str(program.relative_to(Path.cwd()))
    except ValueError:
        return str(program)


def command(script: str, *args: str) -> str:
    """How to run one of the entry scripts: with the interpreter that runs this one
    (`.venv/bin/python` after `make setup`, not a `python` that may lack torch)."""
    interpreter = _as_typed(Path(sys.executable))
    return " ".join([shlex.quote(interpreter), script, *(shlex.quote(a) for a in args)])


def tensorboard_command(log_dir: Path) -> str:
    beside = Path(sys.executable).parent / "tensorboard"  # the venv's
    program = _as_typed(beside) if beside.is_file() else "tensorboard"
    return f"{shlex.quote(program)} --logdir {shlex.quote(str(log_dir))}"


def where_things_are(run_dir: Path) -> str:
    """The end of a run: where its curves, checkpoints and newest video are, and how to see them."""
    checkpoints = run_dir / CHECKPOINT_DIR
    best = checkpoints / "best.pt"
    best_note = f"  (best evaluation: {best})" if best.is_file() else ""
    lines = [
        f"curves:     {run_dir}  (see them: {tensorboard_command(run_dir)})",
        f"checkpoint: {checkpoints / 'final.pt'}{best_note}",
    ]
    videos = sorted((run_dir / VIDEO_DIR).glob("*.mp4"), key=lambda p: p.stat().st_mtime)
    if videos:
        lines.append(f"video:      {videos[-1]}")
    lines.append(f"watch it:   {command('enjoy.py', str(run_dir), '--episodes', '3')}")
    return "\n".join(lines)
