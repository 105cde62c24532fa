"""plot.py: event files read against env steps and wall time, seeds grouped, the PNG, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import plot
from plot import Run, group_labels, group_runs, mean_and_band, read_run
from tests.tiny_runs import tiny_run

BATCH = 2 * 64  # env steps per update of the tiny CartPole runs (num_envs × num_steps)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    return [tiny_run(tmp_path_factory, name) for name in ("cartpole", "cartpole_seed2", "cartpole_other_lr")]


def fake_run(name: str, seed: int, learning_rate: float = 1e-3, env_id: str = "CartPole-v1") -> Run:
    config = {"env_id": env_id, "seed": seed, "run_dir": f"runs/{name}"}
    config["ppo"] = {"learning_rate": learning_rate}
    points = np.array([0.0, 1.0])
    return Run(Path(name), config, points, points, points)


def test_group_runs_ignores_only_seed_and_run_dir():
    a1, a2 = fake_run("a1", seed=1), fake_run("a2", seed=2)
    b = fake_run("b", seed=1, learning_rate=3e-4)
    pong = fake_run("pong", seed=1, env_id="PongNoFrameskip-v4")
    loose = Run(Path("sb3_run"), None, np.zeros(1), np.zeros(1), np.zeros(1))
    groups = group_runs([a1, b, a2, pong, loose])
    names = [[run.path.name for run in group] for group in groups]
    assert names == [["a1", "a2"], ["b"], ["pong"], ["sb3_run"]]
    assert group_labels(groups) == [
        "CartPole-v1 ppo.learning_rate=0.001 (2 seeds)",
        "CartPole-v1 ppo.learning_rate=0.0003 (1 seed)",
        "PongNoFrameskip-v4 (1 seed)",  # the only Pong group: nothing to tell apart
        "sb3_run (1 seed)",
    ]


def test_mean_and_band_on_the_common_range():
    # y = x on [0, 10] and y = 2 on [2, 12]: the common range is [2, 10].
    xs = [np.array([0.0, 10.0]), np.array([2.0, 12.0])]
    ys = [np.array([0.0, 10.0]), np.array([2.0, 2.0])]
    grid, mean, low, high = mean_and_band(xs, ys)
    assert grid[0] == 2.0 and grid[-1] == 10.0
    np.testing.assert_allclose(mean, (grid + 2.0) / 2)
    np.testing.assert_allclose(low, np.full_like(grid, 2.0))
    np.testing.assert_allclose(high, grid)
    # A run of one point shares no range with the others.
    assert mean_and_band([np.array([5.0]), xs[0]], [np.array([1.0]), ys[0]]) is None


def test_read_run_gives_env_steps_and_seconds_since_start(runs):
    run = read_run(runs[0], "rollout/ep_rew_mean")
    assert list(run.steps) == [BATCH, 2 * BATCH]  # logged once per update at x = env steps
    assert run.config["seed"] == 1
    assert np.all(run.seconds >= 0) and np.all(np.diff(run.seconds) >= 0) and run.seconds[-1] < 600
    assert np.all(run.values > 0)  # CartPole pays 1 per step


def test_plot_draws_a_png_with_the_seeds_grouped(runs, tmp_path, capsys):
    output = tmp_path / "curves.png"
    assert plot.main([*map(str, runs), "-o", str(output)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {output}: 3 runs in 2 groups"
    with Image.open(output) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1] > 100


def test_a_folder_of_runs_plots_every_run_in_it(runs, tmp_path, capsys):
    folder = tmp_path / "runs"
    folder.mkdir()
    for index, run in enumerate(runs):
        (folder / f"run{index}").symlink_to(run, target_is_directory=True)
    (folder / "notes").mkdir()  # a subdir that is no run is passed over
    output = tmp_path / "curves.png"
    # A run named on its own as well as through its folder is still one seed, not two.
    assert plot.main([str(folder), str(folder / "run0"), "-o", str(output)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {output}: 3 runs in 2 groups"
    assert output.is_file()


BAD_INPUT = {
    "missing run dir": (lambda run, tmp: [str(tmp / "nope"), "-o", str(tmp / "c.png")], "not a run dir"),
    "no event files": (lambda run, tmp: [str(tmp), "-o", str(tmp / "c.png")], "no TensorBoard event files"),
    "unknown tag": (
        lambda run, tmp: [str(run), "-o", str(tmp / "c.png"), "--tag", "rollout/ep_rew"],
        "has no scalar 'rollout/ep_rew'; it has: ",
    ),
    "unknown image format": (
        lambda run, tmp: [str(run), "-o", str(tmp / "c.xyz")],
        "cannot tell the image format",
    ),
    "output dir missing": (lambda run, tmp: [str(run), "-o", str(tmp / "no" / "c.png")], "does not exist"),
    "output is a dir": (lambda run, tmp: [str(run), "-o", str(tmp / "d.png")], "is a directory"),
    "no run dir": (lambda run, tmp: ["-o", str(tmp / "c.png")], "the following arguments are required: runs"),
}


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_is_one_error_line(name, runs, tmp_path, capsys):
    make_args, expected = BAD_INPUT[name]
    (tmp_path / "d.png").mkdir()
    before = sorted(tmp_path.rglob("*"))
    try:
        status = plot.main(make_args(runs[0], tmp_path))
    except SystemExit as exc:  # argparse
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], err
    assert sorted(tmp_path.rglob("*")) == before
