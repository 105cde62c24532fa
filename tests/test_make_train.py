"""`make train` as a new user runs it: the first-run config, cut short with ARGS, trains MinAtar
SpaceInvaders from its pixel planes, evaluates, films the trained agent and says where everything is."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_make_train_runs_the_first_run_config_and_says_where_things_are(tmp_path):
    run = tmp_path / "first"
    args = f"total_timesteps=1024 eval_interval=1 eval_episodes=1 run_dir={run} --no-progress"
    result = subprocess.run(
        ["make", "-s", "train", f"ARGS={args}"], cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "MinAtar/SpaceInvaders-v1" in (run / "config.yaml").read_text()
    videos = list((run / "videos").glob("step_*.mp4"))
    assert len(videos) == 1  # the trained agent, filmed after the last update
    lines = result.stdout.splitlines()
    assert any(line.startswith("curves:") and "tensorboard --logdir" in line for line in lines)
    assert any(line.startswith("video:") and line.endswith(str(videos[0])) for line in lines)
    assert any(line.startswith("checkpoint:") and "best.pt" in line for line in lines)
