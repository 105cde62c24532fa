"""Runs are never lost or mixed: a used run_dir is refused untouched; a finished run is extended
with `--resume RUN total_timesteps=N`, also from a checkpoint inside it; periodic evaluation keeps
best.pt; without a progress bar the run prints a line every few updates."""

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.test_resume import scalars

REPO = Path(__file__).resolve().parent.parent
TINY = (
    "env_id: CartPole-v1\ntotal_timesteps: 512\ncheckpoint_interval: 1\n"
    "env:\n  num_envs: 2\nppo:\n  num_steps: 64\n"
)


def run_script(cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *argv], cwd=cwd, capture_output=True, text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=300,
    )


def checksums(directory: Path) -> dict[str, str]:
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*")) if p.is_file()
    }


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def finished_run(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    first = run_script(tmp_path, "--config", "tiny.yaml", "--no-progress", "run_dir=run")
    assert first.returncode == 0, first.stderr
    return tmp_path


def test_a_run_dir_that_holds_a_run_is_refused_and_left_untouched(finished_run):
    before = checksums(finished_run / "run")
    second = run_script(finished_run, "--config", "tiny.yaml", "--no-progress", "run_dir=run", "seed=7")
    line = one_error_line(second)
    assert "run already holds a run" in line and "--resume run" in line
    assert checksums(finished_run / "run") == before


def test_a_run_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    (tmp_path / "taken").write_text("mine")
    line = one_error_line(run_script(tmp_path, "--config", "tiny.yaml", "run_dir=taken"))
    assert "exists and is not a directory" in line
    assert (tmp_path / "taken").read_text() == "mine"


def test_a_finished_run_is_extended_without_duplicated_points(finished_run):
    run = finished_run / "run"
    extended = run_script(finished_run, "--resume", "run", "total_timesteps=1e3", "--no-progress")
    assert extended.returncode == 0, extended.stderr
    assert yaml.safe_load((run / "config.yaml").read_text())["total_timesteps"] == 1000
    steps = [step for step, _ in scalars(run)["train/value_loss"]]
    assert steps == list(range(128, 1024 + 1, 128))  # 4 updates, then 4 more: each point once
    again = run_script(finished_run, "--resume", "run")  # finished at its new length
    assert again.returncode == 0 and "already finished" in again.stdout


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["seed=3"], "seed cannot change (only total_timesteps, device may)"),
        (["total_timesteps=256"], "can only be extended beyond its 512"),
    ],
)
def test_resume_refuses_other_changes(finished_run, overrides, expected):
    before = checksums(finished_run / "run")
    assert expected in one_error_line(run_script(finished_run, "--resume", "run", *overrides))
    assert checksums(finished_run / "run") == before


def test_resume_from_a_checkpoint_inside_a_run_sets_the_newer_ones_aside(finished_run):
    checkpoints = finished_run / "run" / "checkpoints"
    older = checkpoints / "update_000002.pt"
    assert older.is_file()
    result = run_script(finished_run, "--resume", str(older.relative_to(finished_run)), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert (checkpoints / "final.pt.superseded").is_file()  # the future it replaced, kept aside
    assert "is newer than update_000002.pt" in result.stderr
    steps = [step for step, _ in scalars(finished_run / "run")["train/value_loss"]]
    assert steps == [128, 256, 384, 512]  # the replaced points are purged from the curve


def test_evaluation_logs_its_means_and_keeps_best_pt_and_lines_show_progress(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    result = run_script(
        tmp_path, "--config", "tiny.yaml", "--no-progress", "run_dir=run", "eval_interval=2",
        "eval_episodes=2", "log_interval=2",
    )
    assert result.returncode == 0, result.stderr
    series = scalars(tmp_path / "run")
    assert [step for step, _ in series["eval/mean_reward"]] == [256, 512]
    assert all(length > 0 for _, length in series["eval/mean_ep_length"])
    from agents.run.checkpoint import load_checkpoint

    best = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["eval"]
    assert best["mean_reward"] == max(value for _, value in series["eval/mean_reward"])
    progress = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert [line.split()[1] for line in progress] == ["256/512", "512/512"]
    assert "steps/s" in progress[0] and "left" in progress[0]
    assert "tensorboard --logdir run" in result.stdout and "final.pt" in result.stdout
