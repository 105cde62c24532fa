"""Where our PPO's time goes, against SB3's, on this machine:

    python -m bench.sps --config configs/breakout.yaml [--repeats 3] [--steps 8192] [--out sps.md]
                        [--nproc 2] [--overlap] [--set precision=fp32 ...]

Measures, each in its own process (peak memory), in turns (env, learner, ours, SB3, then again) so
that drift in the machine's load hits all alike, and reports the median of --repeats turns:
  env-only      the config's vector env stepping random actions: env steps/s
  learner-only  ppo_update on a batch of the config's shape: samples × epochs processed per s
  ours          train() for --steps env steps: env steps/s of the training loop (start-up excluded)
  SB3           SB3's PPO with the same hyperparameters (bench/sb3_mapping.py), timed the same way
and derives the ratio ours/SB3 and the share of our bound min(env-only, learner-only ÷ epochs)
that ours reaches. With --nproc N, also:
  ours, N ranks  train.py under torchrun with N ranks (agents/run/distributed.py), same totals
  one core       env stepping, the policy's rollout-time forward passes and learning, each on one
                 core, and from them the machine bound: cores ÷ (core-seconds per env step of the
                 three), the most any split of the work over the machine's cores can reach
  independent    N copies of train.py at once, each on one rank's share of the config, with no
                 torch.distributed between them: what N ranks would reach if exchanging gradients
                 and waiting for each other cost nothing (the ceiling of data parallelism here)
With --overlap, also:
  ours, overlap  train() with env.vectorization: overlap (envs/overlap.py: one process, two env
                 groups, each stepping while the policy acts for the other)
Prints a markdown table; --out also writes it to a file.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path

from agents.config import ConfigError, TrainConfig, config_to_dict, load_config
from agents.run.cli import ArgumentParser, add_override_option, positive_int
from bench.isolated import BenchError

DEFAULT_STEPS = 8192

# Row titles of the table (the test checks that each appears).
ENV_ONLY = "env-only: vector env, random actions (env steps/s)"
LEARNER_ONLY = "learner-only: ppo_update (samples × epochs / s)"
OURS = "ours end-to-end: train() (env steps/s)"
SB3 = "SB3 end-to-end, same hyperparameters (env steps/s)"
RATIO = "ratio ours / SB3"
BOUND = "our bound: min(env-only, learner-only ÷ epochs) (env steps/s)"
FRACTION = "fraction of our bound reached (ours ÷ bound)"
SEQUENTIAL_BOUND = "sequential bound: 1 / (1/env-only + epochs/learner-only) (env steps/s)"
SEQUENTIAL_FRACTION = "fraction of the sequential bound reached"
ROWS = (ENV_ONLY, LEARNER_ONLY, OURS, SB3, RATIO, BOUND, FRACTION, SEQUENTIAL_BOUND, SEQUENTIAL_FRACTION)
# With --nproc N (N replaces {n} in the titles).
ONE_CORE_ENV = "one core: env stepping (env steps/s)"
ONE_CORE_INFERENCE = "one core: rollout forward passes (observations/s)"
ONE_CORE_LEARNER = "one core: ppo_update (samples × epochs / s)"
MACHINE_BOUND = "machine bound: cores / (1/env + 1/inference + epochs/learner), one core each (env steps/s)"
OURS_RANKS = "ours end-to-end, {n} ranks under torchrun (env steps/s)"
RATIO_RANKS = "ratio ours {n} ranks / SB3"
FRACTION_RANKS = "fraction of the machine bound: ours {n} ranks"
FRACTION_ONE = "fraction of the machine bound: ours 1 process"
FRACTION_SB3 = "fraction of the machine bound: SB3"
INDEPENDENT = "{n} independent copies of a rank's share, nothing exchanged (env steps/s, all copies)"
FRACTION_INDEPENDENT = "fraction of the machine bound: {n} independent copies"
RATIO_RANKS_INDEPENDENT = "ratio ours {n} ranks / {n} independent copies"
# With --overlap.
OURS_OVERLAP = "ours end-to-end, 1 process, env.vectorization overlap (env steps/s)"
RATIO_OVERLAP = "ratio ours overlap / SB3"
RATIO_OVERLAP_ONE = "ratio ours overlap / ours 1 process"
FRACTION_OVERLAP = "fraction of the machine bound: ours overlap"


def prepare(config_path: str, overrides: list[str], steps: int) -> TrainConfig:
    """The config to measure; everything that can be refused is refused here."""
    from bench.sb3_mapping import probe_spaces, sb3_plan

    config = load_config(config_path, overrides)
    if steps < config.batch_size:
        raise ConfigError(
            f"--steps {steps} is less than one batch (env.num_envs × ppo.num_steps = {config.batch_size})"
        )
    config.total_timesteps = steps
    config.checkpoint_interval = 0  # the final checkpoint stays; periodic ones are ours only
    config.capture_video = False
    sb3_plan(config, *probe_spaces(config))  # MappingError if SB3 cannot run it
    return config


def measure(
    config: TrainConfig, repeats: int, steps: int, log=print, nproc: int = 1, overlap: bool = False
) -> dict[str, list[dict]]:
    """{measurement: [result of each repeat]}, measured in turns."""
    from bench.isolated import run_isolated
    from bench.measure import (
        env_only,
        learner_only,
        one_core_costs,
        train_independent,
        train_ours,
        train_ours_ranks,
        train_sb3,
    )

    data = config_to_dict(config)
    updates = max(1, math.ceil(steps / config.batch_size))
    results: dict[str, list[dict]] = {"env": [], "learner": [], "ours": [], "sb3": []}
    if nproc > 1:
        results.update(ranks=[], one_core=[], independent=[])
    if overlap:
        results["overlap"] = []
        overlapped = {**data, "env": {**data["env"], "vectorization": "overlap"}}
    with tempfile.TemporaryDirectory(prefix="bench-sps-") as folder:
        for repeat in range(repeats):
            runs = {
                "env": lambda: run_isolated(env_only, config=data, steps=steps),
                "learner": lambda: run_isolated(learner_only, config=data, updates=updates),
                "ours": lambda: run_isolated(train_ours, config=data, run_dir=f"{folder}/ours_{repeat}"),
                "sb3": lambda: run_isolated(train_sb3, config=data, log_dir=f"{folder}/sb3_{repeat}"),
            }
            if nproc > 1:
                runs["ranks"] = lambda: run_isolated(
                    train_ours_ranks, config=data, run_dir=f"{folder}/ranks_{repeat}/run", nproc=nproc
                )
                runs["one_core"] = lambda: run_isolated(
                    one_core_costs, config=data, steps=steps, updates=updates
                )
                runs["independent"] = lambda: run_isolated(
                    train_independent, config=data, run_dir=f"{folder}/independent_{repeat}", nproc=nproc
                )
            if overlap:
                runs["overlap"] = lambda: run_isolated(
                    train_ours, config=overlapped, run_dir=f"{folder}/overlap_{repeat}"
                )
            for name, run in runs.items():
                result = run()
                if name in ("ours", "sb3", "ranks", "overlap", "independent"):  # env steps ÷ loop time
                    result["steps_per_s"] = result["steps"] / result["loop_time_s"]
                results[name].append(result)
            extra = "".join(
                f", {name} {results[name][-1]['steps_per_s']:.0f}/s"
                for name in ("ranks", "independent", "overlap") if name in results
            )
            log(
                f"[{repeat + 1}/{repeats}] env {results['env'][-1]['steps_per_s']:.0f}/s, "
                f"learner {results['learner'][-1]['samples_per_s']:.0f} samples/s, "
                f"ours {results['ours'][-1]['steps_per_s']:.0f}/s, "
                f"SB3 {results['sb3'][-1]['steps_per_s']:.0f}/s{extra}",
                flush=True,
            )
    return results


def summarise(results: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Medians over the repeats, and the derived ratios: {row: {value, rss, pss}}."""

    def median(name: str, key: str) -> float:
        return statistics.median(result[key] for result in results[name])

    def memory(name: str) -> dict[str, float]:
        return {"rss": median(name, "maxrss_mib"), "pss": median(name, "tree_pss_mib")}

    env, learner = median("env", "steps_per_s"), median("learner", "samples_per_s")
    epochs = median("learner", "epochs_per_update")
    ours, sb3 = median("ours", "steps_per_s"), median("sb3", "steps_per_s")
    bound = min(env, learner / epochs)
    sequential = 1.0 / (1.0 / env + epochs / learner)
    summary = {
        ENV_ONLY: {"value": env, **memory("env")},
        LEARNER_ONLY: {"value": learner, **memory("learner")},
        OURS: {"value": ours, **memory("ours")},
        SB3: {"value": sb3, **memory("sb3")},
        RATIO: {"value": ours / sb3},
        BOUND: {"value": bound},
        FRACTION: {"value": ours / bound},
        SEQUENTIAL_BOUND: {"value": sequential},
        SEQUENTIAL_FRACTION: {"value": ours / sequential},
    }
    if "overlap" in results:
        overlap = median("overlap", "steps_per_s")
        summary[OURS_OVERLAP] = {"value": overlap, **memory("overlap")}
        summary[RATIO_OVERLAP] = {"value": overlap / sb3, "ratio": True}
        summary[RATIO_OVERLAP_ONE] = {"value": overlap / ours, "ratio": True}
    if "ranks" in results:
        summary.update(machine_bound_rows(results, ours, sb3, median, memory))
        if "overlap" in results:
            summary[FRACTION_OVERLAP] = {"value": overlap / summary[MACHINE_BOUND]["value"], "ratio": True}
    return summary


def machine_bound_rows(results: dict[str, list[dict]], ours: float, sb3: float, median, memory) -> dict:
    """The --nproc rows: one-core costs, the machine bound cores / (1/env + 1/inference +
    epochs/learner) in env steps/s, and each run's fraction of it."""
    nproc = results["ranks"][0]["nproc"]
    env1, inference1 = median("one_core", "env_steps_per_s"), median("one_core", "inference_obs_per_s")
    learner1, epochs = median("one_core", "learner_samples_per_s"), median("one_core", "epochs_per_update")
    bound = (os.cpu_count() or 1) / (1 / env1 + 1 / inference1 + epochs / learner1)
    ranks, independent = median("ranks", "steps_per_s"), median("independent", "steps_per_s")
    return {
        ONE_CORE_ENV: {"value": env1},
        ONE_CORE_INFERENCE: {"value": inference1},
        ONE_CORE_LEARNER: {"value": learner1},
        MACHINE_BOUND: {"value": bound},
        OURS_RANKS.format(n=nproc): {"value": ranks, **memory("ranks")},
        RATIO_RANKS.format(n=nproc): {"value": ranks / sb3, "ratio": True},
        FRACTION_RANKS.format(n=nproc): {"value": ranks / bound, "ratio": True},
        FRACTION_ONE: {"value": ours / bound, "ratio": True},
        FRACTION_SB3: {"value": sb3 / bound, "ratio": True},
        INDEPENDENT.format(n=nproc): {"value": independent, **memory("independent")},
        FRACTION_INDEPENDENT.format(n=nproc): {"value": independent / bound, "ratio": True},
        RATIO_RANKS_INDEPENDENT.format(n=nproc): {"value": ranks / independent, "ratio": True},
    }


def markdown(summary: dict[str, dict[str, float]], config_path: str, config: TrainConfig, repeats: int,
             epochs: float) -> str:
    ppo = config.ppo
    lines = [
        f"# Steps per second: {config_path}",
        "",
        f"{config.env_id}, {config.env.num_envs} envs × {ppo.num_steps} steps = batch {config.batch_size}, "
        f"{ppo.update_epochs} epochs × {ppo.num_minibatches} minibatches (learner ran {epochs:.3g} epochs "
        f"per update), {config.total_timesteps} env steps per run; median of {repeats} alternating repeat"
        f"{'s' if repeats > 1 else ''}, each measurement in its own process. {os.cpu_count()} cores.",
        "",
        "| measurement | value | peak RSS, process (MiB) | peak PSS, all processes (MiB) |",
        "|---|---|---|---|",
    ]
    for row, cells in summary.items():
        value = cells["value"]
        is_ratio = row in (RATIO, FRACTION, SEQUENTIAL_FRACTION) or cells.get("ratio")
        text = f"{value:.3f}" if is_ratio else f"{value:.0f}"
        rss = f"{cells['rss']:.0f}" if "rss" in cells else ""
        pss = f"{cells['pss']:.0f}" if "pss" in cells else ""
        lines.append(f"| {row} | {text} | {rss} | {pss} |")
    lines += [
        "",
        "The bound ignores the policy's forward passes during rollouts; PPO alternates rollout and update, "
        "so the sequential bound (the two times added) is the one a single-process loop can reach.",
    ]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument(
        "--repeats", type=positive_int, default=3, help="alternating repeats, median reported (default 3)"
    )
    parser.add_argument(
        "--steps", type=positive_int, default=DEFAULT_STEPS,
        help=f"env steps per run (default {DEFAULT_STEPS})",
    )
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument(
        "--nproc", type=positive_int, default=1,
        help="also measure our trainer under torchrun with this many ranks, and the machine bound",
    )
    parser.add_argument(
        "--overlap", action="store_true",
        help="also measure our trainer with env.vectorization: overlap (one process, two env groups)",
    )
    add_override_option(parser, "every measurement")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pixel envs render with SDL, no screen here
    args = parse_args(argv)
    try:
        if args.out is not None:
            parent = args.out.absolute().parent
            if args.out.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
                raise ConfigError(f"cannot write --out {args.out}")
        config = prepare(args.config, args.overrides, args.steps)
        if args.nproc > 1:
            from agents.run.distributed import check_split

            check_split(config, args.nproc)
        if args.overlap:
            from envs.vector import check_overlap

            check_overlap(config.env)
        results = measure(config, args.repeats, args.steps, nproc=args.nproc, overlap=args.overlap)
    except (ConfigError, BenchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarise(results)
    epochs = statistics.median(result["epochs_per_update"] for result in results["learner"])
    table = markdown(summary, args.config, config, args.repeats, epochs)
    print(table, end="")
    if args.out is not None:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
