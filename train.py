"""Train a PPO agent: python train.py --config configs/cartpole.yaml [dotted.key=value ...]
Continue a run that stopped:  python train.py --resume RUN_DIR

Exit status: 0 done; 2 bad input (one `error:` line, nothing written); 1 the run failed midway
(non-finite numbers, a dead env: one `error:` line, the last good checkpoint kept); 130 / 143
stopped by SIGINT / SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from agents.config import ConfigError, load_config
from agents.run.checkpoint import CheckpointError
from agents.run.cli import ArgumentParser
from agents.run.hints import command, where_things_are

# Games rendered to pixels (pixel envs, videos) draw with SDL: no screen here, and without a
# driver SDL prints a spurious "error:" line about XDG_RUNTIME_DIR.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="YAML config file (see configs/)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR from its newest good checkpoint (or from a checkpoint file in "
        "it), with its own config.yaml; total_timesteps=N extends a finished run",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. ppo.learning_rate=1e-3 seed=2")
    args = parser.parse_args(argv)
    if args.resume is not None and args.config is not None:
        parser.error("--resume continues a run with the config.yaml it started with: it takes no --config")
    if args.resume is None and args.config is None:
        parser.error("one of --config or --resume is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config, args.overrides) if args.resume is None else None
        # Imported here so that a bad command line is refused without paying for torch's import.
        from agents.run.faults import TrainingFailed, TrainingInterrupted
        from agents.run.trainer import train

        try:
            if config is not None and config.pipeline.enabled:
                from agents.run.pipeline import run_pipeline

                run_pipeline(config, config.pipeline, Path(args.config).stem, progress=not args.no_progress)
                return 0
            if config is not None:
                result = train(config, config_name=Path(args.config).stem, progress=not args.no_progress)
            else:
                from agents.run.resume import extend_run, find_resume_point

                point = extend_run(find_resume_point(args.resume), args.overrides)
                if point.finished:
                    print(
                        f"run {args.resume} is already finished: global step {point.global_step} of "
                        f"total_timesteps {point.config.total_timesteps} ({point.checkpoint}); nothing to do "
                        f"(train it further with: {command('train.py', '--resume', str(point.run_dir))} "
                        "total_timesteps=N)"
                    )
                    return 0
                result = train(point.config, progress=not args.no_progress, resume=point)
        except TrainingFailed as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except TrainingInterrupted as exc:
            print(str(exc), file=sys.stderr)
            return 128 + exc.signum
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"run_dir={result.run_dir} env_steps={result.global_step} wall_time={result.wall_time:.1f}s")
    print(f"final mean_return={result.mean_return:.2f} over {result.episodes} episodes")
    print(where_things_are(result.run_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
