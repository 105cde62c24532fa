"""enjoy.py: its score rows against an independent loop with the same seed, its videos, its choice
of checkpoint, and bad input (one `error:` line, exit status 2, nothing written)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import imageio
import numpy as np
import pytest
import torch

import enjoy
from agents.run.checkpoint import load_agent, load_checkpoint, save_checkpoint
from tests.reference_play import reference_play
from tests.tiny_runs import tiny_run

REPO = Path(__file__).resolve().parent.parent
ROW = re.compile(r"episode=(\d+) seed=(\d+) return=(\S+) length=(\d+)")
SUMMARY = re.compile(r"mean_return=(\S+) std=(\S+) episodes=(\d+)")


@pytest.fixture(autouse=True)
def one_torch_thread(monkeypatch):
    # enjoy.main sets these for its process; in-process calls must not leak them into other tests.
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory, "cartpole")


@pytest.fixture(scope="module")
def breakout_run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory, "breakout")


def run_enjoy_process(*args: str) -> subprocess.CompletedProcess:
    """enjoy.py as a user runs it: its own process, stdout and stderr as printed."""
    return subprocess.run(
        [sys.executable, str(REPO / "enjoy.py"), *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def run_enjoy(capsys, *args: str) -> tuple[int, str, str]:
    """enjoy.main in this process (no interpreter start-up): (status, stdout, stderr)."""
    try:
        status = enjoy.main(list(args))
    except SystemExit as exc:  # argparse
        status = exc.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def rows(stdout: str) -> list[tuple[int, int, float, int]]:
    return [(int(i), int(s), float(r), int(n)) for i, s, r, n in ROW.findall(stdout)]


def check_against_reference(
    stdout: str, run_dir: Path, episodes: int, seed: int, deterministic: bool
) -> None:
    agent, config = load_agent(run_dir / "checkpoints" / "final.pt")
    expected = reference_play(agent, config, episodes, seed, deterministic)
    assert rows(stdout) == [(i, seed + i, round(r, 2), n) for i, (r, n, _) in enumerate(expected)]
    returns = np.array([r for r, _, _ in expected])
    last = stdout.strip().splitlines()[-1]
    assert last == f"mean_return={returns.mean():.2f} std={returns.std():.2f} episodes={episodes}"


def test_cartpole_rows_are_the_scores_played(cartpole_run, tmp_path):
    result = run_enjoy_process(
        str(cartpole_run), "--episodes", "3", "--seed", "7", "--video-dir", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # nothing from pygame's renderer either
    check_against_reference(result.stdout, cartpole_run, episodes=3, seed=7, deterministic=False)


def test_breakout_rows_and_videos(breakout_run, tmp_path):
    videos = tmp_path / "new" / "videos"  # created by enjoy
    result = run_enjoy_process(
        str(breakout_run), "--episodes", "2", "--deterministic", "--video-dir", str(videos)
    )
    assert result.returncode == 0, result.stderr
    check_against_reference(result.stdout, breakout_run, episodes=2, seed=0, deterministic=True)
    for index, (_, _, _, length) in enumerate(rows(result.stdout)):
        with imageio.get_reader(str(videos / f"episode_{index:03d}.mp4"), format="FFMPEG") as reader:
            frames = [frame.shape for frame in reader]
        assert len(frames) == length + 1 and set(frames) == {(210, 160, 3)}
    assert sorted(p.name for p in videos.iterdir()) == ["episode_000.mp4", "episode_001.mp4"]


def test_max_steps_cuts_episodes(cartpole_run, capsys):
    status, out, _ = run_enjoy(capsys, str(cartpole_run), "--episodes", "2", "--max-steps", "3")
    assert status == 0
    assert [n for _, _, _, n in rows(out)] == [3, 3] and out.count(" truncated") == 2


def test_run_dir_without_final_plays_the_newest_update(cartpole_run, tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    for update in (9, 10, 2):
        shutil.copy(cartpole_run / "checkpoints" / "final.pt", run / f"checkpoints/update_{update:06d}.pt")
    status, out, err = run_enjoy(capsys, str(run), "--episodes", "1")
    assert status == 0, err
    assert out.splitlines()[0].startswith(f"checkpoint={run / 'checkpoints' / 'update_000010.pt'} ")


def write_checkpoint(source_run: Path, path: Path, **config_changes) -> Path:
    state = load_checkpoint(source_run / "checkpoints" / "final.pt")
    for dotted, value in config_changes.items():
        node = state["config"]
        *sections, key = dotted.split("__")
        for section in sections:
            node = node[section]
        node[key] = value
    save_checkpoint(path, state)
    return path


def make_bad_input(name: str, run: Path, tmp: Path) -> list[str]:
    """Build the files of one bad-input case in `tmp`; return enjoy's arguments."""
    if name == "missing path":
        return [str(tmp / "nope")]
    if name == "run dir without checkpoint":
        (tmp / "run" / "checkpoints").mkdir(parents=True)
        return [str(tmp / "run")]
    if name == "corrupt checkpoint":
        (tmp / "final.pt").write_bytes(b"these are not the weights you are looking for")
        return [str(tmp / "final.pt")]
    if name == "unknown env":
        return [str(write_checkpoint(run, tmp / "a.pt", env_id="NoSuchGame-v9"))]
    if name == "env cannot be made":
        return [str(write_checkpoint(run, tmp / "a.pt", env__kwargs={"wings": 3}))]
    if name == "weights of another network":
        return [str(write_checkpoint(run, tmp / "a.pt", network__hidden_sizes=[8]))]
    if name == "video for a text env":
        text_checkpoint = write_checkpoint(run, tmp / "a.pt", env_id="TokenGen/DigitSort-v0")
        return [str(text_checkpoint), "--video-dir", str(tmp / "v")]
    if name == "video dir is a file":
        (tmp / "v").write_text("")
        return [str(run), "--video-dir", str(tmp / "v")]
    if name == "video dir under a file":
        (tmp / "v").write_text("")
        return [str(run), "--video-dir", str(tmp / "v" / "videos")]
    if name == "video dir not writable":
        (tmp / "v").mkdir()
        (tmp / "v").chmod(0o500)
        return [str(run), "--video-dir", str(tmp / "v" / "videos")]
    if name == "zero episodes":
        return [str(run), "--episodes", "0"]
    if name == "unknown option":
        return [str(run), "--speed", "2"]
    if name == "negative seed":
        return [str(run), "--seed", "-3"]
    if name == "option given twice":
        return [str(run), "--episodes", "1", "--episodes", "2"]
    if name == "config.yaml for a checkpoint":
        return [str(run / "config.yaml")]
    raise AssertionError(name)


BAD_INPUT = {
    "missing path": "no such run dir or checkpoint",
    "run dir without checkpoint": "no checkpoint in",
    "corrupt checkpoint": "cannot load checkpoint",
    "unknown env": "unknown env id 'NoSuchGame-v9'",
    "env cannot be made": "cannot create env 'CartPole-v1'",
    "weights of another network": "does not match the network",
    "video for a text env": "drop --video-dir",
    "video dir is a file": "exists and is not a directory",
    "video dir under a file": "is not a directory",
    "video dir not writable": "is not writable",
    "zero episodes": "argument --episodes: expected a positive integer",
    "unknown option": "unrecognized arguments: --speed",
    "negative seed": "argument --seed: expected a seed in 0..4294967295, got -3",
    "option given twice": "argument --episodes: given twice",
    "config.yaml for a checkpoint": (
        "config.yaml is not a checkpoint (.pt) or a run dir; to play its run, pass the run dir"
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_is_one_error_line(name, cartpole_run, tmp_path, capsys, monkeypatch):
    args = make_bad_input(name, cartpole_run, tmp_path)
    if name == "video dir not writable" and os.geteuid() == 0:
        # root writes through any permission bits: let os.access answer as it would for a user.
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path / "v" and access(p, mode))
    before = sorted(tmp_path.rglob("*"))
    status, out, err = run_enjoy(capsys, *args)
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert BAD_INPUT[name] in lines[0]
    assert out == ""
    assert sorted(tmp_path.rglob("*")) == before  # no video dir, no file written


def test_bad_input_in_its_own_process_has_no_traceback(tmp_path):
    (tmp_path / "final.pt").write_bytes(b"\x00" * 64)
    result = run_enjoy_process(str(tmp_path / "final.pt"))
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot load checkpoint") and len(result.stderr.splitlines()) == 1
    assert result.stdout == ""
