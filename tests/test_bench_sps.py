"""bench.sps: the derived quantities on made-up measurements, and a tiny CartPole run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import sps

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
MEMORY = {"maxrss_mib": 100.0, "tree_pss_mib": 90.0}  # made-up peak memory of a measurement


def test_bound_and_ratios_from_medians():
    results = {
        "env": [{"steps_per_s": s, **MEMORY} for s in (900.0, 1000.0, 5000.0)],  # median 1000
        "learner": [{"samples_per_s": 8000.0, "epochs_per_update": 4.0, **MEMORY}],
        "ours": [{"steps_per_s": 500.0, **MEMORY}],
        "sb3": [{"steps_per_s": 250.0, **MEMORY}],
    }
    summary = sps.summarise(results)
    assert summary[sps.ENV_ONLY]["value"] == 1000.0
    assert summary[sps.RATIO]["value"] == 2.0
    assert summary[sps.BOUND]["value"] == 1000.0  # min(1000, 8000 / 4)
    assert summary[sps.FRACTION]["value"] == 0.5
    assert summary[sps.SEQUENTIAL_BOUND]["value"] == pytest.approx(1 / (1 / 1000 + 4 / 8000))


def test_sps_on_cartpole_reports_every_field(tmp_path, capsys):
    out = tmp_path / "sps.md"
    argv = ["--config", str(CONFIGS / "cartpole.yaml"), "--repeats", "1", "--steps", "512", "--out", str(out)]
    assert sps.main(argv) == 0
    table = out.read_text()
    assert table in capsys.readouterr().out
    for row in sps.ROWS:
        line = next(line for line in table.splitlines() if line.startswith(f"| {row} |"))
        value = float(line.split("|")[2])
        assert value > 0, row
    for row in (sps.ENV_ONLY, sps.LEARNER_ONLY, sps.OURS, sps.SB3):  # peak memory of each process
        line = next(line for line in table.splitlines() if line.startswith(f"| {row} |"))
        assert re.fullmatch(r"\s*\d+\s*", line.split("|")[3]), row


def one_process_results(**more: list[dict]) -> dict[str, list[dict]]:
    """Made-up measurements of one repeat: env 1000/s, learner 8000 samples × 4 epochs/s, ours 400/s,
    SB3 250/s; plus `more`."""
    return {
        "env": [{"steps_per_s": 1000.0, **MEMORY}],
        "learner": [{"samples_per_s": 8000.0, "epochs_per_update": 4.0, **MEMORY}],
        "ours": [{"steps_per_s": 400.0, **MEMORY}],
        "sb3": [{"steps_per_s": 250.0, **MEMORY}],
        **more,
    }


def test_overlap_rows_are_ratios_of_the_medians():
    results = one_process_results(
        overlap=[{"steps_per_s": s, **MEMORY} for s in (100.0, 500.0, 900.0)],  # median 500
    )
    summary = sps.summarise(results)
    assert summary[sps.OURS_OVERLAP]["value"] == 500.0
    assert summary[sps.RATIO_OVERLAP]["value"] == 2.0
    assert summary[sps.RATIO_OVERLAP_ONE]["value"] == 1.25


def test_bad_input_is_one_error_line(capsys):
    assert sps.main(["--config", str(CONFIGS / "cartpole.yaml"), "--steps", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "batch" in err[0]


def test_overlap_measures_our_trainer_once_more_with_overlapped_envs(monkeypatch):
    """measure(overlap=True) adds a train_ours run whose config differs only in env.vectorization
    (the processes themselves are replaced by a recorder here; the CartPole test above runs them)."""
    import bench.isolated

    calls = []

    def record(target, **kwargs):
        calls.append((target.__name__, kwargs))
        return {"steps": 512, "loop_time_s": 1.0, "steps_per_s": 1.0, "samples_per_s": 1.0,
                "epochs_per_update": 1.0, "maxrss_mib": 1.0, "tree_pss_mib": 1.0}

    monkeypatch.setattr(bench.isolated, "run_isolated", record)
    config = sps.prepare(str(CONFIGS / "cartpole.yaml"), [], 512)
    results = sps.measure(config, repeats=1, steps=512, log=lambda *a, **k: None, overlap=True)
    trained = [kwargs["config"] for name, kwargs in calls if name == "train_ours"]
    assert len(trained) == 2 and len(results["overlap"]) == 1
    plain, overlapped = trained
    assert overlapped["env"] == {**plain["env"], "vectorization": "overlap"}
    overlapped.pop("env"), plain.pop("env")
    assert overlapped == plain


def test_overlap_that_cannot_split_is_refused_before_measuring(capsys):
    argv = ["--config", str(CONFIGS / "cartpole.yaml"), "--overlap", "--set", "env.normalize_obs=true"]
    assert sps.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: env.vectorization: overlap")


def test_machine_bound_and_the_independent_copies_rows():
    """--nproc N: bound = cores / (1/env + 1/inference + epochs/learner) from one-core figures, and
    N ranks against N independent copies (the ceiling without any exchange)."""
    import os

    results = one_process_results(
        one_core=[{"env_steps_per_s": 2000.0, "inference_obs_per_s": 4000.0,
                   "learner_samples_per_s": 4000.0, "epochs_per_update": 4.0}],
        ranks=[{"steps_per_s": s, "nproc": 2, **MEMORY} for s in (500.0, 600.0, 700.0)],
        independent=[{"steps_per_s": s, "nproc": 2, **MEMORY} for s in (800.0, 750.0, 900.0)],
    )
    summary = sps.summarise(results)
    # per env step on one core: 1/2000 + 1/4000 + 4/4000 s = 1.75 ms
    bound = (os.cpu_count() or 1) / 1.75e-3
    assert summary[sps.MACHINE_BOUND]["value"] == pytest.approx(bound)
    assert summary[sps.OURS_RANKS.format(n=2)]["value"] == 600.0
    assert summary[sps.INDEPENDENT.format(n=2)]["value"] == 800.0
    assert summary[sps.FRACTION_INDEPENDENT.format(n=2)]["value"] == pytest.approx(800.0 / bound)
    assert summary[sps.RATIO_RANKS_INDEPENDENT.format(n=2)]["value"] == pytest.approx(0.75)


def test_independent_copies_each_train_one_ranks_share(tmp_path):
    """Two copies of train.py at once, each as rank k of a 2-rank run would train: half the envs,
    seeded as rank k's, stepped in its own process, one torch thread, minibatches of a rank's size,
    and half the env steps (rounded up to whole updates, as the ranks' are)."""
    import yaml

    from agents.config import config_to_dict
    from bench.measure import loop_span, train_independent

    config = config_to_dict(sps.prepare(str(CONFIGS / "cartpole.yaml"), ["ppo.num_minibatches=4"], 1024))
    config["total_timesteps"] = 1030  # not a whole number of batches: 5 updates of 2 × 128 for 2 ranks
    result = train_independent(config, run_dir=str(tmp_path), nproc=2)
    envs, steps = config["env"]["num_envs"], config["ppo"]["num_steps"]
    rank_minibatch = envs * steps // 2 // 4
    assert result["steps"] == 2 * 5 * (envs // 2) * steps
    spans = []
    for number in range(2):
        written = yaml.safe_load((tmp_path / f"copy_{number}" / "config.yaml").read_text())
        assert written["env"]["num_envs"] == envs // 2
        assert written["env"]["vectorization"] == "sync" and written["torch_threads"] == 1
        copy_batch = written["env"]["num_envs"] * written["ppo"]["num_steps"]
        assert copy_batch // written["ppo"]["num_minibatches"] == rank_minibatch
        assert written["seed"] == config["seed"] + number * envs // 2  # rank k's env seeds
        assert written["device"] == config["device"]
        spans.append(loop_span(tmp_path / f"copy_{number}"))
    # Launched together: the second copy's config was written before the first copy had finished
    # (CartPole's loops are too short here to be sure they overlap; Breakout's last a minute).
    finished = (tmp_path / "copy_0" / "checkpoints" / "final.pt").stat().st_mtime
    assert (tmp_path / "copy_1.yaml").stat().st_mtime < finished
    (_, start0, end0), (_, start1, end1) = spans
    assert result["loop_time_s"] == pytest.approx(max(end0, end1) - min(start0, start1))
