"""Resumable stages in one run dir: the RLHF pipeline's layout and its caching rule.

    RUN_DIR/pipeline.json         the pipeline's settings and config
    RUN_DIR/stages/<name>/        each stage's outputs, then its `done` marker (its JSON summary)
    RUN_DIR/stages/ppo/run/       the PPO-ptx stage's training run dir (config.yaml, checkpoints, ...)
    RUN_DIR/eval/<policy>/        TensorBoard scalars of the evaluation, one dir per policy
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

STAGES_DIR = "stages"
DONE_MARKER = "done"
STAGES = ("corpus", "sft", "reward_model", "ppo", "eval")
PPO_RUN = Path(STAGES_DIR) / "ppo" / "run"  # the PPO-ptx stage's run dir, relative to the pipeline's
EVAL_DIR = "eval"


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
