"""Bad input to train.py: one `error:` line on stderr, exit status 2, no traceback, nothing written."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOOD = "env_id: CartPole-v1\ntotal_timesteps: 256\nenv:\n  num_envs: 2\nppo:\n  num_steps: 64\n"


def write_config(tmp_path: Path, config_text: str | None) -> None:
    if config_text is not None:
        (tmp_path / "config.yaml").write_text(config_text)


def run_train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    config = tmp_path / "config.yaml"
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", str(config), "--no-progress", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


CASES = {
    "unknown env id": (GOOD.replace("CartPole-v1", "CartPol-v1"), [], "did you mean 'CartPole-v1'"),
    "missing config": (None, [], "config file not found"),
    "malformed yaml": ("env_id: [CartPole-v1\nseed: 1\n", [], "malformed YAML"),
    "unknown key": (GOOD, ["ppo.learning_rat=1e-3"], "did you mean 'ppo.learning_rate'"),
    "unknown key in file": (GOOD + "sed: 3\n", [], "did you mean 'seed'"),
    "wrong type": (GOOD, ["ppo.learning_rate=fast"], "ppo.learning_rate must be float"),
    "wrong type bool": (GOOD, ["ppo.anneal_lr=3"], "ppo.anneal_lr must be bool"),
    "negative learning rate": (GOOD, ["ppo.learning_rate=-1e-3"], "ppo.learning_rate must be > 0"),
    "zero envs": (GOOD, ["env.num_envs=0"], "env.num_envs must be > 0"),
    "minibatch larger than batch": (GOOD, ["ppo.num_minibatches=1000"], "exceeds the batch size"),
    "bad choice": (GOOD, ["env.vectorization=threads"], "env.vectorization must be"),
    "override without =": (GOOD, ["seed"], "must look like key=value"),
    "bad env kwargs": (GOOD, ["env.kwargs={wings: 3}"], "cannot create env"),
    "continuous actions": (GOOD.replace("CartPole-v1", "Pendulum-v1"), [], "Discrete actions only"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line(tmp_path, name):
    config_text, overrides, expected = CASES[name]
    write_config(tmp_path, config_text)
    before = {p for p in tmp_path.rglob("*")}
    result = run_train(tmp_path, *overrides)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert {p for p in tmp_path.rglob("*")} == before  # no run dir, no file written


def test_good_config_trains_and_prints_the_final_line(tmp_path):
    write_config(tmp_path, GOOD)
    result = run_train(tmp_path, f"run_dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("final mean_return=") and last.endswith("episodes")
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "final.pt").is_file()
    assert list(run.glob("events.out.tfevents.*"))


def test_default_run_dir_name(tmp_path):
    write_config(tmp_path, GOOD)
    result = run_train(tmp_path, "seed=7")
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    env, config_name, seed, stamp = run.name.split("__")
    assert (env, config_name, seed) == ("CartPole-v1", "config", "7") and stamp
