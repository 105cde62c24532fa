"""Train a PPO agent: python train.py --config configs/cartpole.yaml [dotted.key=value ...]"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from agents.checkpoint import CheckpointError
from agents.cli import ArgumentParser
from agents.config import ConfigError, load_config

# Games rendered to pixels (pixel envs, videos) draw with SDL: no screen here, and without a
# driver SDL prints a spurious "error:" line about XDG_RUNTIME_DIR.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--config", required=True, help="YAML config file (see configs/)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. ppo.learning_rate=1e-3 seed=2")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config, args.overrides)
        # Imported here so that a bad command line is refused without paying for torch's import.
        from agents.trainer import train

        result = train(config, config_name=Path(args.config).stem, progress=not args.no_progress)
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"run_dir={result.run_dir} env_steps={result.global_step} wall_time={result.wall_time:.1f}s")
    print(f"final mean_return={result.mean_return:.2f} over {result.episodes} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
