"""Our PPO against Stable-Baselines3's PPO on one config, same hyperparameters and seeds:

    python -m bench.compare --config configs/breakout.yaml --steps 1000000 --seeds 1 2 3 [--out DIR]
                            [--nproc N] [--libraries ours sb3] [--set precision=fp32 ...]

Runs alternate (ours seed 1, SB3 seed 1, ours seed 2, ...) so that drift in the machine's load hits
both libraries alike; each runs in its own process (peak memory). Writes into DIR:
  tb/ours_seed<k>, tb/sb3_seed<k>   TensorBoard logs under the same tags (they overlay), and beside
                                    them measurement.json once the run has finished (with the
                                    run's return curve: that file alone is enough to read it back)
  results.md, results.json          final return and area under the curve ± 95 % CI over seeds,
                                    wall time, env steps/s, peak memory; SB3's arguments; the
                                    differences that remain for this config
  return_vs_steps.png, return_vs_wall_time.png   mean over seeds with a 95 % CI band
With --nproc N our runs train under torchrun with N ranks (the same totals; agents/run/distributed.py),
SB3's as always: two DIRs, one with --nproc 2 and one without, compare 2 ranks with 1 process.
With --libraries ours only our runs are made (a learning claim over seeds 1-5 needs no SB3 run).
A finished run already in DIR with the same config is read back instead of run again, so a long
benchmark that was interrupted, or whose seeds were run one invocation at a time, is completed by
running the full command again. bench/README.md documents the hyperparameter mapping.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from agents.config import ConfigError, TrainConfig, config_from_dict, config_to_dict, load_config
from agents.run.cli import ArgumentParser, add_override_option, positive_int, seed_int
from bench.isolated import BenchError

TAG = "rollout/ep_rew_mean"
LIBRARIES = ("ours", "sb3")
CONFIDENCE = 0.95
WALL_GRID_POINTS = 200  # points of the common wall-time grid the seeds are interpolated onto
CURVE_KEYS = ("steps", "values", "seconds")  # TAG's curve in a measurement record
MEASUREMENT_FILE = "measurement.json"  # written into a run's log directory when the run has finished


def library_label(library: str) -> str:
    if library == "ours":
        return "ours"
    from importlib.metadata import version

    return f"SB3 {version('stable_baselines3')}"


# ------------------------------------------------------------------------------ set-up


@dataclass
class Setup:
    config: TrainConfig  # with total_timesteps = --steps, no periodic checkpoints, no videos
    config_path: str
    seeds: list[int]
    out: Path
    sb3_arguments: dict[str, str]
    differences: list[str]
    finished: dict[tuple[str, int], dict] = field(default_factory=dict)  # (library, seed): its record
    nproc: int = 1  # ranks of our runs (torchrun when > 1)
    libraries: tuple[str, ...] = LIBRARIES  # which libraries train, in this order

    def run_config(self, seed: int) -> dict:
        """The config a seed's runs train on, as plain JSON values (comparable with a stored one);
        with --nproc N > 1 also "nproc": N, so that runs of another world size are not read back."""
        extra = {"nproc": self.nproc} if self.nproc > 1 else {}
        return json.loads(json.dumps({**config_to_dict(self.config), "seed": seed, **extra}))

    def run_dir(self, library: str, seed: int) -> Path:
        return self.out / "tb" / f"{library}_seed{seed}"

    @property
    def end_step(self) -> int:
        """The env steps every run ends at: both libraries stop at the first update boundary at or
        past --steps (TrainConfig.num_updates rounds up, as SB3's learn() does), so with --steps
        5000 and batches of 256 they train and log up to 5120, not 5000."""
        return self.config.num_updates * self.config.batch_size


def prepare(
    config_path: str, overrides: list[str], steps: int, seeds: list[int], out: Path | None, nproc: int = 1,
    libraries: tuple[str, ...] = LIBRARIES,
) -> Setup:
    """Everything that can be refused, refused before the first run (ConfigError / MappingError)."""
    from bench.sb3_mapping import describe, differences, probe_spaces, sb3_plan

    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds must be distinct, got {' '.join(map(str, seeds))}")
    config = load_config(config_path, overrides)
    if steps < config.batch_size:
        raise ConfigError(
            f"--steps {steps} is less than one batch (env.num_envs × ppo.num_steps = {config.batch_size}): "
            "nothing would be logged"
        )
    config.total_timesteps = steps
    # Periodic checkpoints and evaluation videos are ours only; the final checkpoint stays.
    config.checkpoint_interval = 0
    config.capture_video = False
    config.stop_at_return = None  # every run trains to the same step, whatever it reaches
    if nproc > 1:
        from agents.run.distributed import check_split

        check_split(config, nproc)
    sb3_arguments, notes = {}, []
    if "sb3" in libraries:  # what SB3 cannot take is refused before the first run
        observation_space, actions = probe_spaces(config)
        sb3_arguments = describe(sb3_plan(config, observation_space, actions))
        notes = differences(config, observation_space, actions)
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / "bench" / f"{Path(config_path).stem}__{steps}__{stamp}"
    setup = Setup(config, config_path, seeds, out, sb3_arguments, notes, nproc=nproc, libraries=libraries)
    for library in libraries:
        for seed in seeds:
            record = finished_run(setup, library, seed)
            if record is not None:
                setup.finished[library, seed] = record
    try:
        (out / "tb").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create output directory {out}: {exc.strerror}") from None
    if not os.access(out, os.W_OK):
        raise ConfigError(f"output directory {out} is not writable")
    return setup


def finished_run(setup: Setup, library: str, seed: int) -> dict | None:
    """The stored record of a finished run of this config in the run's directory, None if the directory
    is empty or absent; ConfigError if it holds an unfinished run or one of another config (reusing
    either would mix runs that do not belong together; overwriting would lose it)."""
    run_dir = setup.run_dir(library, seed)
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return None
    path = run_dir / MEASUREMENT_FILE
    if not path.is_file():
        raise ConfigError(f"{run_dir} holds an unfinished run; delete it or choose another --out")
    try:
        record = json.loads(path.read_text())
        stored_config = record["config"]
        record["measurement"]["wall_time_s"]  # noqa: B018 - present in every finished record
    except (OSError, ValueError, KeyError, TypeError):
        message = f"{path} is not a measurement record; delete the run or choose another --out"
        raise ConfigError(message) from None
    if with_defaults(stored_config) != setup.run_config(seed):
        raise ConfigError(f"{run_dir} holds a run of a different config or --steps; choose another --out")
    return record


def split_run_config(run_config: dict) -> tuple[dict, dict]:
    """(the TrainConfig part, the keys Setup.run_config adds beside it: "nproc")."""
    extra = {key: run_config[key] for key in ("nproc",) if key in run_config}
    return {key: value for key, value in run_config.items() if key not in extra}, extra


def with_defaults(stored: dict) -> dict | None:
    """A stored run config with every key the code has gained since at its default value (such a
    key changes nothing the run did: a long benchmark stays readable across code changes); None if
    the stored config is no longer valid (a removed or renamed key: not the same run)."""
    trained, extra = split_run_config(stored)
    try:
        config = config_from_dict(trained)
    except (ConfigError, TypeError, ValueError):
        return None
    return json.loads(json.dumps({**config_to_dict(config), **extra}))


# Paths whose changes do not change what is measured: benchmark results and prose (a benchmark that
# adds seeds to a table rewrites the table's files in docs/ while the next run trains).
NOT_CODE = (":(exclude)docs", ":(exclude)*.md")


def source_commit(root: Path = Path(__file__).resolve().parents[1]) -> str:
    """The git commit of the code being measured ('unknown' outside a git checkout), '+' if a tracked
    file outside NOT_CODE is modified."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *NOT_CODE],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+" if dirty else "")


# ------------------------------------------------------------------------------ running


@dataclass
class Run:
    library: str
    seed: int
    measurement: dict  # from bench.measure (+ memory from bench.isolated)
    commit: str  # the code it ran (source_commit)
    steps: np.ndarray = field(default_factory=lambda: np.zeros(0))  # env steps of the TAG events
    values: np.ndarray = field(default_factory=lambda: np.zeros(0))
    seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))  # since the run's start


def read_curve(run_dir: Path, start_time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TAG's (env steps, values, seconds since start_time); empty if no episode ever finished."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})  # 0: keep all events
    accumulator.Reload()
    if TAG not in accumulator.Tags()["scalars"]:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    events = sorted(accumulator.Scalars(TAG), key=lambda event: event.step)
    steps = np.array([event.step for event in events], dtype=np.float64)
    values = np.array([event.value for event in events], dtype=np.float64)
    seconds = np.array([event.wall_time - start_time for event in events], dtype=np.float64)
    return steps, values, seconds


def recorded_curve(record: dict, run_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's TAG curve as its record keeps it (so that measurement.json alone, without the event
    files, is a finished run that can be committed and read back in a later session); records
    written before they kept it are read from the run's event files."""
    if "curve" not in record:
        return read_curve(run_dir, record["measurement"]["start_time"])
    return tuple(np.array(record["curve"][key], dtype=np.float64) for key in CURVE_KEYS)


def run_all(setup: Setup) -> list[Run]:
    from bench.isolated import run_isolated
    from bench.measure import train_ours, train_ours_ranks, train_sb3

    runs = []
    total = len(setup.seeds) * len(setup.libraries)
    commit = source_commit()
    for seed in setup.seeds:
        config = setup.run_config(seed)
        for library in setup.libraries:
            run_dir = setup.run_dir(library, seed)
            record = setup.finished.get((library, seed))
            if record is None:
                trained, _ = split_run_config(config)
                if library == "ours" and setup.nproc > 1:
                    measurement = run_isolated(
                        train_ours_ranks, config=trained, run_dir=str(run_dir), nproc=setup.nproc
                    )
                elif library == "ours":
                    measurement = run_isolated(train_ours, config=trained, run_dir=str(run_dir))
                else:
                    measurement = run_isolated(train_sb3, config=trained, log_dir=str(run_dir))
                curve = read_curve(run_dir, measurement["start_time"])
                record = {"config": config, "commit": commit, "measurement": measurement,
                          "curve": {key: values.tolist() for key, values in zip(CURVE_KEYS, curve)}}
                (run_dir / MEASUREMENT_FILE).write_text(json.dumps(record, indent=2) + "\n")
            measurement = record["measurement"]
            reused = (library, seed) in setup.finished
            commit_of_run = record.get("commit", "unknown")
            run = Run(library, seed, measurement, commit_of_run, *recorded_curve(record, run_dir))
            runs.append(run)
            print(
                f"[{len(runs)}/{total}] {library_label(library)} seed {seed}: {measurement['steps']} env "
                f"steps, {measurement['wall_time_s']:.1f} s, final {TAG} {final_return(run, setup):.4g}"
                + (" (finished earlier, read back)" if reused else ""),
                flush=True,
            )
    return runs


# ------------------------------------------------------------------------------ summaries


def steps_grid(setup: Setup) -> np.ndarray:
    """The update boundaries up to the runs' end, where both libraries log: every batch_size env steps."""
    batch = setup.config.batch_size
    return np.arange(batch, setup.end_step + 1, batch, dtype=np.float64)


def final_return(run: Run, setup: Setup) -> float:
    from bench.stats import final_value

    return final_value(run.steps, run.values, setup.end_step)


def per_run_row(run: Run, setup: Setup) -> dict[str, float]:
    from bench.stats import area_under_curve

    m = run.measurement
    return {
        "final": final_return(run, setup),
        "auc": area_under_curve(run.steps, run.values, steps_grid(setup)),
        "wall_time_s": m["wall_time_s"],
        "steps_per_s": m["steps"] / m["loop_time_s"],
        "maxrss_mib": m["maxrss_mib"],
        "tree_pss_mib": m["tree_pss_mib"],
    }


COLUMNS = {  # key: column title
    "final": f"final {TAG}",
    "auc": "AUC (mean ep_rew_mean)",
    "wall_time_s": "wall time (s)",
    "steps_per_s": "env steps/s",
    "maxrss_mib": "peak RSS, trainer (MiB)",
    "tree_pss_mib": "peak PSS, all processes (MiB)",
}


def format_ci(mean: float, half: float) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.4g}" if math.isnan(half) else f"{mean:.4g} ± {half:.2g}"


def summarise(runs: list[Run], setup: Setup) -> dict[str, dict[str, list[float]]]:
    """{library: {key: [mean, half-width of the CI]}}."""
    from bench.stats import mean_confidence_interval

    summary = {}
    for library in setup.libraries:
        rows = [per_run_row(run, setup) for run in runs if run.library == library]
        summary[library] = {
            key: list(mean_confidence_interval([row[key] for row in rows], CONFIDENCE)) for key in COLUMNS
        }
    return summary


def markdown(runs: list[Run], setup: Setup, summary: dict) -> str:
    config = setup.config
    seeds = " ".join(map(str, setup.seeds))
    both = len(setup.libraries) > 1
    title = "Our PPO vs Stable-Baselines3 PPO" if both else f"{library_label(setup.libraries[0])} over seeds"
    order = "run alternately (ours, SB3, next seed)" if both else "run one after another"
    lines = [
        f"# {title}: {setup.config_path}",
        "",
        f"{config.env_id}, {setup.end_step} env steps per run (batch {config.batch_size}), "
        f"seeds {seeds}, {order}. Mean over seeds ± half-width of the 95 % t confidence interval.",
        "",
        "| library | " + " | ".join(COLUMNS.values()) + " | worst seed (final) |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for library in setup.libraries:
        cells = [format_ci(*summary[library][key]) for key in COLUMNS]
        worst = min((run for run in runs if run.library == library), key=lambda run: final_return(run, setup))
        cells.append(f"{format_ci(final_return(worst, setup), math.nan)} (seed {worst.seed})")
        lines.append(f"| {library_label(library)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"- final: {TAG} (mean return of the last {config.stats_window} episodes) at the last logged point "
        f"≤ {setup.end_step} env steps (--steps {config.total_timesteps} rounded up to whole batches).",
        f"- AUC: mean of {TAG} over the update boundaries (every {config.batch_size} env steps up to "
        f"{setup.end_step}), i.e. area under the curve ÷ env steps; points before a run's first "
        "finished episode are left out.",
        "- wall time: from building the envs to the end of training (imports excluded); env steps/s: env "
        "steps ÷ training-loop time (from after the first reset to the end of the last update).",
        "- peak RSS: ru_maxrss of the training process; peak PSS: largest sampled sum over the training "
        "process and its env worker processes (shared pages split between them).",
        "",
        "![return vs env steps](return_vs_steps.png)",
        "![return vs wall time](return_vs_wall_time.png)",
        "",
        "## Per run",
        "",
        "Code: the git commit each run trained with (+: with uncommitted changes to tracked files outside "
        "docs/ and *.md); started: UTC.",
        "",
        "| library | seed | " + " | ".join(COLUMNS.values()) + " | code | started |",
        "|---" * (len(COLUMNS) + 4) + "|",
    ]
    for run in runs:
        row = per_run_row(run, setup)
        cells = [format_ci(row[key], math.nan) for key in COLUMNS]
        started = datetime.fromtimestamp(run.measurement["start_time"], timezone.utc)
        started = started.strftime("%Y-%m-%d %H:%M")
        lines.append(f"| {library_label(run.library)} | {run.seed} | " + " | ".join(cells)
                     + f" | {run.commit} | {started} |")
    if "sb3" in setup.libraries:
        lines += ["", "## SB3 arguments (bench/sb3_mapping.py)", "", "| argument | value |", "|---|---|"]
        lines += [f"| {key} | `{value}` |" for key, value in setup.sb3_arguments.items()]
        lines += ["", "## Differences that remain for this config (see bench/README.md)", ""]
        lines += [f"- {note}" for note in setup.differences]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ plots


def mean_band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column of [seeds, points]: mean and CI half-width over the seeds that have a value."""
    from bench.stats import mean_confidence_interval

    columns = [mean_confidence_interval(curves[:, j], CONFIDENCE) for j in range(curves.shape[1])]
    return np.array([c[0] for c in columns]), np.array([c[1] for c in columns])


def plot_curves(runs: list[Run], setup: Setup) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only
    import matplotlib.pyplot as plt

    from bench.stats import step_curve

    paths = []
    for x_name, x_label, file_name in (
        ("steps", "env steps", "return_vs_steps.png"),
        ("seconds", "wall time (s)", "return_vs_wall_time.png"),
    ):
        figure, axis = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
        for index, library in enumerate(setup.libraries):
            color = f"C{index}"
            mine = [run for run in runs if run.library == library and run.steps.size]
            if not mine:
                continue
            label = f"{library_label(library)} ({len(mine)} seed{'s' if len(mine) > 1 else ''})"
            if x_name == "steps":
                grid = steps_grid(setup)
                curves = np.stack([step_curve(run.steps, run.values, grid) for run in mine])
            else:
                low = max(run.seconds[0] for run in mine)
                high = min(run.seconds[-1] for run in mine)
                if len(mine) == 1 or not high > low:
                    for number, run in enumerate(mine):
                        axis.plot(run.seconds, run.values, color=color, label=label if number == 0 else None,
                                  marker="." if run.seconds.size == 1 else None)
                    continue
                grid = np.linspace(low, high, WALL_GRID_POINTS)
                curves = np.stack([np.interp(grid, run.seconds, run.values) for run in mine])
            mean, half = mean_band(curves)
            axis.plot(grid, mean, color=color, label=label, marker="." if grid.size == 1 else None)
            if np.isfinite(half).any():
                axis.fill_between(grid, mean - half, mean + half, color=color, alpha=0.25, linewidth=0)
        axis.set_xlabel(x_label)
        axis.set_ylabel(TAG)
        axis.set_title(f"{setup.config.env_id}: mean over seeds, 95 % CI band")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
        path = setup.out / file_name
        figure.savefig(path, dpi=110)
        plt.close(figure)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------ entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument("--steps", required=True, type=positive_int, help="env steps per run (N)")
    parser.add_argument("--seeds", nargs="+", type=seed_int, default=[1, 2, 3], help="seeds (default 1 2 3)")
    parser.add_argument(
        "--out", type=Path, help="output directory (default runs/bench/<config>__<N>__<time>)"
    )
    parser.add_argument(
        "--nproc", type=positive_int, default=1, help="train our runs under torchrun with this many ranks"
    )
    parser.add_argument(
        "--libraries", nargs="+", choices=LIBRARIES, default=list(LIBRARIES),
        help="which libraries train (default: ours sb3; `ours` alone for a claim over seeds)",
    )
    add_override_option(parser, "both libraries")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pixel envs render with SDL, no screen here
    args = parse_args(argv)
    try:
        libraries = tuple(library for library in LIBRARIES if library in args.libraries)
        setup = prepare(args.config, args.overrides, args.steps, args.seeds, args.out, args.nproc, libraries)
        runs = run_all(setup)
    except (ConfigError, BenchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(runs, setup)
    (setup.out / "results.md").write_text(markdown(runs, setup, summary))
    raw = {
        "config": setup.config_path,
        "env_steps": setup.config.total_timesteps,
        "summary": summary,
        "runs": [
            {"library": run.library, "seed": run.seed, "commit": run.commit, **run.measurement,
             **per_run_row(run, setup)}
            for run in runs
        ],
    }
    (setup.out / "results.json").write_text(json.dumps(raw, indent=2, default=float) + "\n")
    plot_curves(runs, setup)
    print(f"wrote {setup.out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
