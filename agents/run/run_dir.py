"""The layout of a run dir, and making a new one.

    RUN_DIR/config.yaml              the full config the run was started with (what --resume reads)
    RUN_DIR/events.out.tfevents.*    TensorBoard scalars, texts and videos
    RUN_DIR/checkpoints/             update_<N>.pt every checkpoint_interval updates, final.pt at the end
    RUN_DIR/videos/step_<N>.mp4      with capture_video
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import yaml

from agents.config import ConfigError, TrainConfig, config_to_dict

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
VIDEO_DIR = "videos"


def default_run_dir(config: TrainConfig, config_name: str) -> Path:
    """runs/<env>__<config>__<seed>__<timestamp>, with -2, -3... when a run started in the same second."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    env_name = config.env_id.replace("/", "-").replace(":", "-")
    base = Path("runs") / f"{env_name}__{config_name}__{config.seed}__{stamp}"
    run_dir, n = base, 1
    while run_dir.exists():
        n += 1
        run_dir = base.with_name(f"{base.name}-{n}")
    return run_dir


def holds_run(path: Path) -> bool:
    """Whether `path` holds (part of) a run: its config, a checkpoint or TensorBoard events."""
    return (
        (path / CONFIG_FILE).exists()
        or any((path / CHECKPOINT_DIR).glob("*.pt"))
        or any(path.glob("events.out.tfevents.*"))
    )


def check_new_run_dir(config: TrainConfig) -> None:
    """Refuse a run_dir that is a file or already holds a run: a new run never touches an old one."""
    if not config.run_dir:
        return
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"run_dir {run_dir} exists and is not a directory")
    if run_dir.is_dir() and holds_run(run_dir):
        raise ConfigError(
            f"run_dir {run_dir} already holds a run; continue it with --resume {run_dir} "
            "(total_timesteps=N to extend a finished one) or choose a new run_dir"
        )


def write_config(run_dir: Path, config: TrainConfig) -> None:
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))


def prepare_run_dir(config: TrainConfig, config_name: str) -> Path:
    """Create the run dir (config.run_dir, else a new default one, written back into the config)
    with its checkpoint dir, and write config.yaml. ConfigError, before anything is written, for
    a run_dir that already holds a run."""
    check_new_run_dir(config)
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config, config_name)
    config.run_dir = str(run_dir)
    (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    write_config(run_dir, config)
    return run_dir
