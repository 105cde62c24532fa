"""The whole RLHF pipeline at toy size (every stage, PPO-ptx included), rlhf_report.py on it, and
the PPO stage's run dir used as any run dir (enjoy.py, train.py --resume) by a fresh process."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pytest

import rlhf_report
from agents.config import PipelineConfig, load_config
from agents.run.checkpoint import load_checkpoint
from agents.run.pipeline import run_pipeline
from agents.run.stages import PPO_RUN

TINY = ["rlhf.sft_steps=40", "network.d_model=32", "network.n_layers=1", "total_timesteps=1024",
        "ppo.num_steps=16", "rlhf.ptx_coef=0.5", "rlhf.ptx_batch_size=8",
        "checkpoint_interval=1"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rlhf") / "run"
    config = load_config("configs/rlhf_sentiment.yaml", [f"run_dir={run_dir}", *TINY])
    pipeline = PipelineConfig(
        enabled=True, corpus_size=200, rm_pairs=64, rm_held_out_pairs=32, rm_steps=10, rm_batch_size=16,
        eval_samples_per_prompt=2,
    )
    summaries = run_pipeline(config, pipeline, progress=False)
    return run_dir, summaries


def test_every_stage_runs_and_ppo_logs_the_judged_scalars(pipeline_run):
    run_dir, summaries = pipeline_run
    assert summaries["ppo"]["global_step"] >= 1024
    assert set(summaries["eval"]) >= {"sft", "ppo", "table"}
    assert all(summaries[s]["wall_time_s"] > 0 for s in ("corpus", "sft", "reward_model", "ppo", "eval"))
    for tag, _ in rlhf_report.PANELS:  # what the over-optimisation plot reads
        run = rlhf_report.read_run(run_dir / rlhf_report.PPO_RUN, tag)
        assert len(run.values) >= 2
    fluency = rlhf_report.read_run(run_dir / rlhf_report.PPO_RUN, "rlhf/fluency").values
    assert ((0 <= fluency) & (fluency <= 1)).all()


def test_report_writes_the_table_and_both_plots(pipeline_run, tmp_path, capsys):
    run_dir, summaries = pipeline_run
    out = tmp_path / "report"
    assert rlhf_report.main([str(run_dir), str(run_dir), "--labels", "main", "again", "--out", str(out)]) == 0
    table = (out / "table.md").read_text()
    evaluation = json.loads((run_dir / "stages" / "eval" / "eval.json").read_text())
    rows = [line for line in table.splitlines() if line.startswith("| SFT") or line.startswith("| PPO")]
    assert [r.split("|")[1].strip() for r in rows] == ["SFT", "PPO main", "PPO again"]
    assert rows[0].split("|")[2].strip() == f"{evaluation['sft']['gold_reward']:.3f}"
    assert rows[1].split("|")[2].strip() == f"{evaluation['ppo']['gold_reward']:.3f}"
    assert rows[1].split("|")[8].strip() == f"{summaries['reward_model']['held_out_accuracy']:.3f}"
    for name in ("overoptimisation.png", "gold_histogram.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100
    assert "PPO main" in capsys.readouterr().out


def test_report_refuses_an_unfinished_run_and_writes_nothing(tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    (unfinished / "stages" / "sft").mkdir(parents=True)
    out = tmp_path / "report"
    assert rlhf_report.main([str(unfinished), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "eval" in err[0]
    assert not out.exists()


def fresh_process(*argv: str) -> subprocess.CompletedProcess:
    """A script run as a user runs it: a new interpreter, which has imported nothing yet (so env
    ids registered only as a side effect of some other import are unknown there)."""
    return subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_enjoy_plays_the_ppo_stage_of_a_pipeline_run(pipeline_run):
    run_dir, _ = pipeline_run
    result = fresh_process("enjoy.py", str(run_dir / PPO_RUN), "--episodes", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert "env=TokenGen/SentimentRM-v0" in lines[0]
    assert [line.split()[0] for line in lines[1:3]] == ["episode=0", "episode=1"]
    assert lines[-1].startswith("mean_return=") and lines[-1].endswith("episodes=2")


def test_train_resumes_the_ppo_stage_of_a_pipeline_run(pipeline_run, tmp_path):
    run_dir, summaries = pipeline_run
    crashed = tmp_path / "ppo"  # the stage's run dir as a crash after its first update leaves it
    shutil.copytree(run_dir / PPO_RUN, crashed)
    for path in (crashed / "checkpoints").iterdir():
        if path.name != "update_000001.pt":
            path.unlink()
    result = fresh_process("train.py", "--resume", str(crashed), "--no-progress")
    assert result.returncode == 0, result.stderr
    final = load_checkpoint(crashed / "checkpoints" / "final.pt")
    assert final["global_step"] == summaries["ppo"]["global_step"]
    assert final["config"]["env_id"] == "TokenGen/SentimentRM-v0"


def test_report_over_seeds_ends_with_the_mean_its_interval_and_the_worst_seed(pipeline_run, tmp_path, capsys):
    run_dir, _ = pipeline_run
    seeds = []
    for seed, gold in ((1, 0.7), (2, 0.5)):  # two "seeds": copies of the run with their own gold reward
        copy = tmp_path / f"seed{seed}"
        shutil.copytree(run_dir, copy)
        eval_file = copy / "stages" / "eval" / "eval.json"
        evaluation = json.loads(eval_file.read_text())
        evaluation["ppo"]["gold_reward"] = gold
        eval_file.write_text(json.dumps(evaluation))
        seeds.append(str(copy))
    out = tmp_path / "report"
    assert rlhf_report.main([*seeds, "--labels", "seed 1", "seed 2", "--seeds", "--out", str(out)]) == 0
    summary = (out / "table.md").read_text().strip().splitlines()[-1]
    # mean 0.6; half-width t_{0.975, 1} · s / √2 = 12.706 · 0.1414 / 1.414 = 1.271; worst: seed 2
    expected = "PPO over 2 seeds: gold reward 0.600 ± 1.271 (mean ± 95 % CI), worst 0.500 (seed 2)"
    assert summary.startswith(expected)
    assert "fluency ÷ SFT's" in summary
