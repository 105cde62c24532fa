"""Plot learning curves of runs from their TensorBoard event files:

    python plot.py RUN_DIR [RUN_DIR ...] -o curves.png [--tag rollout/ep_rew_mean]

A folder of runs (a dir whose subdirs are run dirs, such as runs/) stands for all of them.

Left panel: the scalar against env steps; right panel: against wall time since the run started
(the first event of its event files). Runs whose config.yaml files are equal except for `seed`
and `run_dir` are one group, drawn as the mean over its seeds with a min–max band (with 2–5
seeds, the band shows every run instead of an estimate of a spread). Each run is interpolated
linearly onto a common grid spanning the range all runs of the group cover. Legend: env id, plus
the config keys in which groups of the same env differ, plus the number of seeds.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from agents.config import flatten_dict
from agents.run.cli import ArgumentParser
from agents.run.curves import PlotError, Run, read_run

__all__ = ["PlotError", "Run", "group_labels", "group_runs", "main", "mean_and_band", "plot", "read_run"]
DEFAULT_TAG = "rollout/ep_rew_mean"
IGNORED_KEYS = ("seed", "run_dir")  # what may differ between the runs of one group
GRID_POINTS = 200  # points of the common grid a group is interpolated onto
MAX_LABEL_KEYS = 3  # differing config keys named in a legend entry
EVENT_FILES = "events.out.tfevents.*"  # TensorBoard's: what makes a dir a run dir here


def group_key(config: dict[str, Any] | None, path: Path) -> str:
    """Runs with equal keys are seeds of one experiment: the config without seed and run_dir.
    A run without config.yaml is a group of its own."""
    if config is None:
        return f"path:{path.resolve()}"
    rest = {key: value for key, value in config.items() if key not in IGNORED_KEYS}
    return json.dumps(rest, sort_keys=True, default=str)


def group_runs(runs: list[Run]) -> list[list[Run]]:
    """Runs grouped by group_key, groups and runs in the order first given."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(group_key(run.config, run.path), []).append(run)
    return list(groups.values())


def group_config(group: list[Run]) -> dict[str, Any] | None:
    """The flattened config (section.key: value) shared by a group's runs."""
    config = group[0].config
    return flatten_dict(config) if config is not None else None


def group_labels(groups: list[list[Run]]) -> list[str]:
    """Legend entries: env id, the config keys in which groups of that env differ, seed count."""
    configs = [group_config(group) for group in groups]
    labels = []
    for group, config in zip(groups, configs):
        if config is None:
            name = group[0].path.name
        else:
            env_id = config.get("env_id", "?")
            siblings = [c for c in configs if c is not None and c.get("env_id", "?") == env_id]
            differing = sorted(
                key
                for key in set().union(*siblings)
                if key not in IGNORED_KEYS
                and len({json.dumps(c.get(key), default=str) for c in siblings}) > 1
            )
            shown = [f"{key}={config.get(key)}" for key in differing[:MAX_LABEL_KEYS]]
            if len(differing) > MAX_LABEL_KEYS:
                shown.append("…")
            name = " ".join([env_id, *shown])
        seeds = len(group)
        labels.append(f"{name} ({seeds} seed{'s' if seeds > 1 else ''})")
    return labels


def mean_and_band(xs: list[np.ndarray], ys: list[np.ndarray]) -> tuple[np.ndarray, ...] | None:
    """(grid, mean, min, max) of curves (x_i, y_i) interpolated onto GRID_POINTS points spanning
    the x range every curve covers; None when they share no range (a run with one point)."""
    low, high = max(x[0] for x in xs), min(x[-1] for x in xs)
    if not high > low:
        return None
    grid = np.linspace(low, high, GRID_POINTS)
    stacked = np.stack([np.interp(grid, x, y) for x, y in zip(xs, ys)])
    return grid, stacked.mean(axis=0), stacked.min(axis=0), stacked.max(axis=0)


def draw(axis: Any, runs: list[Run], x_name: str, label: str, color: Any) -> None:
    """One group on one panel: its single curve, or mean and min–max band of its seeds."""
    xs = [getattr(run, x_name) for run in runs]
    ys = [run.values for run in runs]
    summary = mean_and_band(xs, ys) if len(runs) > 1 else None
    if summary is None:
        for index, (x, y) in enumerate(zip(xs, ys)):
            marker = "." if len(x) == 1 else None  # a line of one point would not show
            axis.plot(x, y, color=color, label=label if index == 0 else None, marker=marker)
        return
    grid, mean, low, high = summary
    axis.plot(grid, mean, color=color, label=label)
    axis.fill_between(grid, low, high, color=color, alpha=0.25, linewidth=0)


def check_output(path: Path) -> None:
    """Refuse an output path that cannot be written, before any event file is read."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    formats = FigureCanvasAgg.get_supported_filetypes()
    suffix = path.suffix.lstrip(".").lower()
    if suffix not in formats:
        raise PlotError(f"cannot tell the image format of {path}; use one of: .{', .'.join(sorted(formats))}")
    if path.is_dir():
        raise PlotError(f"output {path} is a directory")
    parent = path.absolute().parent
    if not parent.is_dir():
        raise PlotError(f"output directory {parent} does not exist")
    if path.exists() and not path.is_file():
        raise PlotError(f"output {path} is not a regular file")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise PlotError(f"output {path} is not writable")


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any(path.glob(EVENT_FILES))


def runs_in_folder(path: Path) -> list[Path]:
    """The run dirs directly inside `path` in name order, if `path` is a folder of runs (a dir
    without event files of its own, such as runs/); else []."""
    if not path.is_dir() or is_run_dir(path):
        return []
    try:
        return sorted(child for child in path.iterdir() if is_run_dir(child))
    except OSError:  # unreadable: read_run says what is wrong with it
        return []


def expand_run_dirs(paths: list[Path]) -> list[Path]:
    """`paths` with each folder of runs replaced by its run dirs; a run named twice (runs/ and
    runs/a) is read once, or it would count as two seeds. Anything else is kept as given, for
    read_run to accept or refuse."""
    unique: dict[Path, Path] = {}
    for path in paths:
        for run in runs_in_folder(path) or [path]:
            unique.setdefault(run.absolute(), run)
    return list(unique.values())


def plot(run_dirs: list[Path], output: Path, tag: str = DEFAULT_TAG) -> list[list[Run]]:
    """Draw the two panels for `run_dirs` (already expanded: expand_run_dirs) into `output`;
    return the groups drawn."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on training machines
    import matplotlib.pyplot as plt

    check_output(output)
    runs = [read_run(path, tag) for path in run_dirs]
    groups = group_runs(runs)
    labels = group_labels(groups)
    figure, (by_steps, by_time) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (group, label) in enumerate(zip(groups, labels)):
        color = colors[index % len(colors)]
        draw(by_steps, group, "steps", label, color)
        draw(by_time, group, "seconds", label, color)
    by_steps.set_xlabel("env steps")
    by_time.set_xlabel("wall time (s)")
    for axis in (by_steps, by_time):
        axis.set_ylabel(tag)
        axis.grid(alpha=0.3)
    by_steps.legend(fontsize="small")
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="+", type=Path,
        help="run dirs (events.out.tfevents.*, config.yaml), or folders of run dirs such as runs/",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="image file, e.g. curves.png")
    parser.add_argument("--tag", default=DEFAULT_TAG, help=f"scalar to plot (default {DEFAULT_TAG})")
    args = parser.parse_args(argv)
    run_dirs = expand_run_dirs(args.runs)
    try:
        groups = plot(run_dirs, args.output, args.tag)
    except PlotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {len(run_dirs)} runs in {len(groups)} groups")
    return 0


if __name__ == "__main__":
    sys.exit(main())
