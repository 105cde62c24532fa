"""bench.compare: the CI helper against hand-computed numbers, curve summaries, a tiny CartPole run
of both libraries (table, plots, logs), bad input."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from agents.config import load_config
from bench import compare
from bench.stats import (
    area_under_curve,
    final_value,
    mean_confidence_interval,
    student_t_quantile,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    "df, expected",  # two-sided 95 % quantiles t_{0.975, df} from the standard tables
    [(1, 12.706204736), (2, 4.302652730), (4, 2.776445105), (10, 2.228138852), (30, 2.042272456)],
)
def test_student_t_quantile_matches_tables(df, expected):
    assert student_t_quantile(0.95, df) == pytest.approx(expected, rel=1e-8)


def test_mean_confidence_interval_hand_computed():
    # [1, 2, 3]: mean 2, s = 1, n = 3 → half-width t_{0.975,2} · 1/√3 = 4.3026527 / 1.7320508 = 2.4841377.
    mean, half = mean_confidence_interval([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(2.4841377, rel=1e-6)
    # [0, 2]: mean 1, s = √2, n = 2 → t_{0.975,1} · √2/√2 = 12.7062047.
    assert mean_confidence_interval([0.0, 2.0]) == pytest.approx((1.0, 12.7062047))
    # NaN (a run without a finished episode) is left out; one value has no interval.
    mean, half = mean_confidence_interval([5.0, math.nan])
    assert mean == 5.0 and math.isnan(half)


def test_final_value_and_area_under_curve():
    steps, values = np.array([256.0, 512.0, 768.0]), np.array([1.0, 2.0, 3.0])
    assert final_value(steps, values, 700) == 2.0  # last logged point ≤ 700
    assert math.isnan(final_value(steps, values, 100))
    assert area_under_curve(steps, values, np.array([256.0, 512.0, 768.0])) == 2.0
    # Grid points before the first logged value are left out: (1 + 1 + 2) / 3.
    assert area_under_curve(steps, values, np.array([128.0, 256.0, 300.0, 512.0])) == pytest.approx(4 / 3)


def test_final_and_plots_end_where_the_runs_end_past_steps_not_a_multiple_of_the_batch(tmp_path):
    # --steps 5000 with batches of 8 × 32 = 256: both libraries train 20 updates, to 5120 env steps.
    config = load_config(CONFIGS / "cartpole.yaml", ["total_timesteps=5000"])
    setup = compare.Setup(config, "cartpole.yaml", [1], tmp_path, {}, [])
    steps = np.arange(256.0, 5121.0, 256.0)  # logged after each update
    measurement = dict(wall_time_s=1.0, steps=5120, loop_time_s=1.0, maxrss_mib=1.0, tree_pss_mib=1.0)
    run = compare.Run("ours", 1, measurement, "unknown", steps, values=steps / 10, seconds=steps / 1000)
    assert setup.end_step == 5120
    assert compare.steps_grid(setup)[-1] == 5120  # where return_vs_steps.png ends
    row = compare.per_run_row(run, setup)
    assert row["final"] == 512.0  # the value logged at 5120, not the one at 4864
    assert row["auc"] == pytest.approx((25.6 + 512.0) / 2)  # over the 20 update boundaries, 5120 included


def test_compare_on_cartpole_writes_table_plots_and_logs(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["--config", str(CONFIGS / "cartpole.yaml"), "--steps", "2048", "--seeds", "1", "--out", str(out)]
    assert compare.main(argv) == 0
    table = (out / "results.md").read_text()
    assert "| ours |" in table
    assert "| SB3 " in table
    summary = table.split("## Per run")[0]  # the per-library table comes first
    summary_rows = [line for line in summary.splitlines() if line.startswith(("| ours |", "| SB3 "))]
    assert len(summary_rows) == 2
    assert all("n/a" not in row for row in summary_rows)  # CartPole finishes episodes within 2048 steps
    for name in ("return_vs_steps.png", "return_vs_wall_time.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG"
    for library in ("ours", "sb3"):
        assert list((out / "tb" / f"{library}_seed1").glob("events.out.tfevents.*"))
    assert (out / "results.json").is_file()


def test_compare_reads_back_finished_runs_and_refuses_foreign_ones(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["--config", str(CONFIGS / "cartpole.yaml"), "--steps", "512", "--out", str(out)]
    assert compare.main([*argv, "--seeds", "1"]) == 0
    first = json.loads((out / "results.json").read_text())["runs"]
    # A run recorded before the code gained a config key (here stop_at_return, at its default) is
    # the same run: still read back.
    record_path = out / "tb" / "ours_seed1" / compare.MEASUREMENT_FILE
    record = json.loads(record_path.read_text())
    del record["config"]["stop_at_return"]
    record_path.write_text(json.dumps(record))
    # A second invocation with one more seed runs only the new seed's pair; seed 1 is read back.
    assert compare.main([*argv, "--seeds", "1", "2"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("read back") == 2 and "ours seed 2" in printed
    second = json.loads((out / "results.json").read_text())["runs"]
    order = [(run["library"], run["seed"]) for run in second]
    assert order == [("ours", 1), ("sb3", 1), ("ours", 2), ("sb3", 2)]
    assert second[:2] == first  # same measurement, same curve, same summary numbers
    assert "| ours | 1 |" in (out / "results.md").read_text().split("## Per run")[1]

    # The record alone (event files and checkpoints gone, as when it is committed) is the same run.
    for path in sorted((out / "tb" / "ours_seed2").rglob("*"), reverse=True):
        if path.name != compare.MEASUREMENT_FILE:
            path.rmdir() if path.is_dir() else path.unlink()
    assert compare.main([*argv, "--seeds", "1", "2"]) == 0
    assert capsys.readouterr().out.count("read back") == 4
    assert json.loads((out / "results.json").read_text())["runs"] == second

    events = sorted((out / "tb" / "ours_seed1").iterdir())
    # Other hyperparameters in the same directory: refused, nothing touched.
    assert compare.main([*argv, "--seeds", "1", "--set", "ppo.ent_coef=0.1"]) == 2
    assert "different config" in capsys.readouterr().err
    # A run without its measurement record (interrupted): refused, not overwritten.
    (out / "tb" / "sb3_seed2" / compare.MEASUREMENT_FILE).unlink()
    assert compare.main([*argv, "--seeds", "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "unfinished run" in err[0]
    assert sorted((out / "tb" / "ours_seed1").iterdir()) == events


def test_ours_alone_over_seeds_names_the_worst_seed_and_takes_what_sb3_cannot(tmp_path, capsys):
    """--libraries ours: no SB3 run, no SB3 sections, the worst seed's final return in the summary;
    a config SB3 cannot be mapped to (here a shared trunk) is no longer refused."""
    out = tmp_path / "bench"
    argv = ["--config", str(CONFIGS / "cartpole.yaml"), "--steps", "512", "--seeds", "1", "2",
            "--out", str(out), "--libraries", "ours", "--set", "network.shared_trunk=true"]
    assert compare.main(argv) == 0
    assert sorted(path.name for path in (out / "tb").iterdir()) == ["ours_seed1", "ours_seed2"]
    table = (out / "results.md").read_text()
    assert "SB3" not in table
    runs = json.loads((out / "results.json").read_text())["runs"]
    worst = min(runs, key=lambda run: run["final"])
    summary_row = next(line for line in table.splitlines() if line.startswith("| ours |"))
    assert summary_row.endswith(f"(seed {worst['seed']}) |")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--config", "no/such.yaml", "--steps", "2048"], "config file not found"),
        (["--config", str(CONFIGS / "cartpole.yaml"), "--steps", "100"], "less than one batch"),
        (["--config", str(CONFIGS / "cartpole.yaml"), "--steps", "0"], "positive integer"),
        (["--config", str(CONFIGS / "cartpole.yaml"), "--steps", "512", "--seeds", "1", "1"], "distinct"),
        (["--config", str(CONFIGS / "cartpole.yaml"), "--steps", "512", "--set", "network.shared_trunk=true"],
         "shared"),
        (["--config", str(CONFIGS / "token_sort_grpo.yaml"), "--steps", "4096"], "GRPO"),
    ],
)
def test_bad_input_is_one_error_line(argv, message, tmp_path, capsys):
    code = None
    try:
        code = compare.main([*argv, "--out", str(tmp_path / "out")])
    except SystemExit as exc:  # argparse refusals
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_compare_with_two_ranks_records_them_and_reads_back_only_its_own(tmp_path):
    """--nproc 2: our runs train under torchrun; their records say so, and a later invocation without
    --nproc refuses to read them back as one-process runs (nothing touched)."""
    out = tmp_path / "cmp"
    argv = ["--config", str(CONFIGS / "cartpole.yaml"), "--steps", "2048", "--seeds", "1", "--out", str(out)]
    assert compare.main([*argv, "--nproc", "2"]) == 0
    record = json.loads((out / "tb" / "ours_seed1" / compare.MEASUREMENT_FILE).read_text())
    assert record["config"]["nproc"] == 2 and record["measurement"]["nproc"] == 2
    assert record["measurement"]["steps"] == 2048  # both ranks' env steps
    assert compare.main([*argv, "--nproc", "2"]) == 0  # read back, not run again
    assert compare.main(argv) == 2


def test_source_commit_marks_code_changes_not_result_files(tmp_path):
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    (tmp_path / "docs").mkdir()
    for name in ("train.py", "docs/results.json", "BENCHMARKS.md"):
        (tmp_path / name).write_text("0\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    head = git("rev-parse", "--short", "HEAD")
    assert compare.source_commit(tmp_path) == head
    # A benchmark rewriting its own table, and prose, measure the same code.
    (tmp_path / "docs/results.json").write_text("1\n")
    (tmp_path / "BENCHMARKS.md").write_text("1\n")
    (tmp_path / "scratch.py").write_text("untracked\n")
    assert compare.source_commit(tmp_path) == head
    (tmp_path / "train.py").write_text("1\n")
    assert compare.source_commit(tmp_path) == head + "+"
