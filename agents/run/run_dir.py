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

from agents.config import TrainConfig, config_to_dict

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
VIDEO_DIR = "videos"


def default_run_dir(config: TrainConfig, config_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    env_name = config.env_id.replace("/", "-")
    return Path("runs") / f"{env_name}__{config_name}__{config.seed}__{stamp}"


def prepare_run_dir(config: TrainConfig, config_name: str) -> Path:
    """Create the run dir (config.run_dir, else a new default one, written back into the config)
    with its checkpoint dir, and write config.yaml."""
    run_dir = Path(config.run_dir) if config.run_dir else default_run_dir(config, config_name)
    config.run_dir = str(run_dir)
    (run_dir / CHECKPOINT_DIR).mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return run_dir
