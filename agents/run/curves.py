"""Reading a run's curves back: one TensorBoard scalar of a run dir, with its config.yaml
(plot.py, rlhf_report.py, bench)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


class PlotError(ValueError):
    """Bad input; reported as one `error:` line."""


@dataclass
class Run:
    path: Path
    config: dict[str, Any] | None  # config.yaml, None when the run has none
    steps: np.ndarray  # env steps of the scalar's events
    values: np.ndarray
    seconds: np.ndarray  # wall time of each event since the run's first event


def read_run(path: Path, tag: str) -> Run:
    """The `tag` scalar of run dir `path` (all event files in it), with its config.yaml."""
    import yaml
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not path.is_dir():
        raise PlotError(f"not a run dir: {path}")
    if not list(path.glob("events.out.tfevents.*")):
        raise PlotError(f"no TensorBoard event files (events.out.tfevents.*) in {path}")
    config = None
    config_path = path / "config.yaml"
    if config_path.is_file():
        try:
            config = yaml.safe_load(config_path.read_text())
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
            raise PlotError(f"cannot read {config_path}: {exc}") from None
        if not isinstance(config, dict):
            raise PlotError(f"{config_path} does not hold a mapping of config keys")
    # size_guidance 0: keep every scalar event (the default samples 10,000 of them).
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
    try:
        accumulator.Reload()
    except Exception as exc:  # a truncated or foreign file: any reader error is bad input here
        raise PlotError(f"cannot read the event files in {path}: {exc}") from None
    tags = accumulator.Tags()["scalars"]
    if tag not in tags:
        raise PlotError(f"{path} has no scalar '{tag}'; it has: {', '.join(sorted(tags)) or 'none'}")
    events = accumulator.Scalars(tag)
    start = accumulator.FirstEventTimestamp()
    steps = np.array([e.step for e in events], dtype=np.float64)
    order = np.argsort(steps, kind="stable")
    return Run(
        path,
        config,
        steps[order],
        np.array([e.value for e in events], dtype=np.float64)[order],
        np.array([e.wall_time - start for e in events], dtype=np.float64)[order],
    )
