"""Faults midway through a run: stop signals, non-finite numbers, envs that raise or die, and
a run killed (SIGKILL) at random points and resumed each time."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import agents.run.learner
from agents.run.checkpoint import load_checkpoint, update_checkpoints
from agents.run.hints import command
from agents.run.resume import find_resume_point

REPO = Path(__file__).resolve().parent.parent
BATCH = 2 * 32  # env steps per update of TINY
TINY = """\
env_id: {env_id}
total_timesteps: {total}
torch_threads: 1
checkpoint_interval: {interval}
env:
  num_envs: 2
  vectorization: {vectorization}
  num_workers: {workers}
  kwargs: {kwargs}
ppo:
  num_steps: 32
  num_minibatches: 2
  update_epochs: 2
"""


def write_config(
    path: Path, env_id="CartPole-v1", total=6 * BATCH, interval=2, vectorization="sync", kwargs="{}",
    workers=0,
):
    path.write_text(TINY.format(env_id=env_id, total=total, interval=interval, vectorization=vectorization,
                                kwargs=kwargs, workers=workers))
    return path


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # train() sets it for the whole process


def main_in_process(capsys, *argv: str) -> tuple[int, str, str]:
    sys.path.insert(0, str(REPO))
    try:
        import train as train_script
    finally:
        sys.path.remove(str(REPO))
    status = train_script.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def last_logged_step(event_file: Path, tag: str = "train/loss") -> int:
    accumulator = EventAccumulator(str(event_file), size_guidance={"scalars": 0})
    accumulator.Reload()
    if tag not in accumulator.Tags()["scalars"]:
        return 0
    return max(e.step for e in accumulator.Scalars(tag))


# ------------------------------------------------------------------------ non-finite numbers


def poison(kind: str):
    """A ppo_update that goes wrong at update 3 in the way `kind` names."""
    real_update = agents.run.learner.ppo_update
    calls = []

    def update(agent, optimizer, batch, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3 and kind == "gradient":
            batch.returns = batch.returns.clone()  # rollout tensors are inference tensors
            batch.returns[0] = float("nan")  # NaN value loss → NaN gradients in the critic
        metrics = real_update(agent, optimizer, batch, *args, **kwargs)
        if len(calls) == 3 and kind == "parameter":
            with torch.no_grad():
                agent.policy_head.bias[0] = float("inf")
        if len(calls) == 3 and kind == "loss":
            metrics["value_loss"] = float("nan")
        return metrics

    return update


NON_FINITE = {
    "gradient": "non-finite gradient in value_trunk.0.weight at update 3",
    "parameter": "non-finite parameter policy_head.bias at update 3",
    "loss": "non-finite loss (value_loss = nan) at update 3",
}


@pytest.mark.parametrize("kind", list(NON_FINITE))
def test_non_finite_numbers_stop_the_run_and_keep_the_last_good_checkpoint(
    kind, tmp_path, capsys, monkeypatch
):
    monkeypatch.setattr(agents.run.learner, "ppo_update", poison(kind))
    config = write_config(tmp_path / "config.yaml")
    run = tmp_path / "run"
    status, out, err = main_in_process(capsys, "--config", str(config), "--no-progress", f"run_dir={run}")
    assert status == 1
    good = run / "checkpoints" / "update_000002.pt"
    assert err.splitlines() == [f"error: {NON_FINITE[kind]}; last good checkpoint: {good}"]
    # nothing poisoned saved
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["update_000002.pt"]
    weights = load_checkpoint(good)["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())


# ------------------------------------------------------------------------------------- envs


class FaultyCartPole(gym.Wrapper):
    """CartPole whose every copy raises, or kills its own process, at its `fail_at`-th step."""

    def __init__(self, fail_at: int, how: str) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.fail_at, self.how, self.steps = fail_at, how, 0

    def step(self, action):
        self.steps += 1
        if self.steps == self.fail_at:
            if self.how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"pole snapped at step {self.steps}")
        return self.env.step(action)


gym.register("tests/FaultyCartPole-v0", entry_point=FaultyCartPole)

ENV_FAULTS = {
    # (vectorization, how): the start of the error line
    ("sync", "raise"): "error: env tests/FaultyCartPole-v0 raised RuntimeError: pole snapped at step 100",
    ("async", "raise"): (
        "error: env tests/FaultyCartPole-v0 worker 0 (pid {pid}) raised RuntimeError: "
        "pole snapped at step 100"
    ),
    ("async", "kill"): (
        "error: env tests/FaultyCartPole-v0 worker {index} (pid {pid}) died: killed by SIGKILL"
    ),
    # two groups of one worker each (envs/overlap.py): group 0 is waited for first
    ("overlap", "raise"): (
        "error: env tests/FaultyCartPole-v0 worker 0 (pid {pid}) raised RuntimeError: "
        "pole snapped at step 100"
    ),
    ("overlap", "kill"): (
        "error: env tests/FaultyCartPole-v0 worker {index} (pid {pid}) died: killed by SIGKILL"
    ),
    # env.num_workers 2 (envs/shards.py): a worker is named with the envs it steps
    ("async+workers", "raise"): (
        "error: env tests/FaultyCartPole-v0 worker 0 (envs 0–0) (pid {pid}) raised RuntimeError: "
        "pole snapped at step 100"
    ),
    ("async+workers", "kill"): (
        "error: env tests/FaultyCartPole-v0 worker {index} (envs {first}–{last}) (pid {pid}) died: "
        "killed by SIGKILL"
    ),
}


@pytest.mark.parametrize("vectorization, how", list(ENV_FAULTS))
def test_a_failing_env_is_named_after_a_checkpoint_of_the_last_update(vectorization, how, tmp_path, capsys):
    """Env step 100 falls in update 4 (32 steps per update): update 3 is saved, although it is
    not a periodic checkpoint, and the error names the env and what happened."""
    vectorization, _, workers = vectorization.partition("+")
    config = write_config(
        tmp_path / "config.yaml", env_id="tests/FaultyCartPole-v0", vectorization=vectorization,
        kwargs=f"{{fail_at: 100, how: {how}}}", workers=2 if workers else 0,
    )
    run = tmp_path / "run"
    status, out, err = main_in_process(capsys, "--config", str(config), "--no-progress", f"run_dir={run}")
    assert status == 1
    (line,) = err.splitlines()
    head, _, tail = line.partition("; checkpoint ")
    expected = ENV_FAULTS[(vectorization + ("+workers" if workers else ""), how)]
    # Worker pids, and which worker is found dead first, are not known in advance: numbers.
    pattern = re.sub(r"\\\{\w+\\\}", r"\\d+", re.escape(expected))
    assert re.fullmatch(pattern, head), (head, pattern)
    saved = run / "checkpoints" / "update_000003.pt"
    resume = command("train.py", "--resume", str(run))  # the interpreter that ran, as typed from here
    assert tail == f"{saved} (update 3, global step {3 * BATCH}); continue with: {resume}"
    assert load_checkpoint(saved)["update"] == 3
    assert not (run / "checkpoints" / "final.pt").exists()


def test_an_env_failing_before_the_first_update_leaves_no_checkpoint(tmp_path, capsys):
    config = write_config(
        tmp_path / "config.yaml", env_id="tests/FaultyCartPole-v0", kwargs="{fail_at: 5, how: raise}"
    )
    run = tmp_path / "run"
    status, out, err = main_in_process(capsys, "--config", str(config), "--no-progress", f"run_dir={run}")
    assert status == 1
    assert err.splitlines() == [
        "error: env tests/FaultyCartPole-v0 raised RuntimeError: pole snapped at step 5; "
        "no update had finished: nothing saved"
    ]
    assert not list((run / "checkpoints").iterdir())


# ---------------------------------------------------------------------------------- signals


def start_training(*args: str, new_session: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), "--no-progress", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        start_new_session=new_session,
    )


def wait_for_checkpoint(
    process: subprocess.Popen, checkpoints: Path, beyond: int, timeout: float = 60
) -> int:
    """Poll (cheaply: a directory listing) until a checkpoint of update > `beyond` exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        numbered = update_checkpoints(checkpoints)
        if numbered and max(numbered) > beyond:
            return max(numbered)
        assert process.poll() is None, process.communicate()
        time.sleep(0.02)
    process.kill()
    raise AssertionError("no checkpoint appeared")


def test_stop_signals_save_a_checkpoint_and_exit_130_or_143(tmp_path):
    """Ctrl-C reaches the whole process group, async env workers included: they must keep
    serving the trainer until it has saved, and say nothing. SIGTERM goes to the trainer alone."""
    config = write_config(tmp_path / "config.yaml", total=10_000 * BATCH, interval=1, vectorization="async")
    run = tmp_path / "run"
    checkpoints = run / "checkpoints"

    process = start_training("--config", str(config), f"run_dir={run}", new_session=True)
    wait_for_checkpoint(process, checkpoints, beyond=0)
    os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    (line,) = err.splitlines()
    assert line.startswith(f"interrupted by SIGINT: checkpoint {checkpoints}/update_")
    assert line.endswith(f"; continue with: {command('train.py', '--resume', str(run))}")
    newest = max(update_checkpoints(checkpoints))
    state = load_checkpoint(checkpoints / f"update_{newest:06d}.pt")
    assert f"(update {newest}, global step {state['global_step']})" in line
    (events,) = run.glob(f"events.out.tfevents.*.{process.pid}.*")
    assert last_logged_step(events) == state["global_step"]  # logs flushed up to the checkpoint

    process = start_training("--resume", str(run))
    wait_for_checkpoint(process, checkpoints, beyond=newest)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.startswith("interrupted by SIGTERM: checkpoint ") and len(err.splitlines()) == 1
    assert max(update_checkpoints(checkpoints)) > newest


# ------------------------------------------------------------------------- fault injection

KILL_RUN = """\
env_id: CartPole-v1
total_timesteps: 30720  # 120 updates of 8 envs × 32 steps
torch_threads: 1
checkpoint_interval: 3
keep_checkpoints: 2
env:
  num_envs: 8
  vectorization: sync
ppo:
  num_steps: 32
  num_minibatches: 2
  update_epochs: 4
"""
KILL_BATCH, KILL_INTERVAL, KILL_TOTAL = 8 * 32, 3, 30720


def test_a_run_killed_five_times_ends_as_requested_with_continuous_curves(tmp_path):
    """SIGKILL at seeded random moments (a few checkpoints into each process, then a random
    delay, landing anywhere: mid-rollout, mid-update, mid-checkpoint), resume each time. Each
    kill loses at most one checkpoint interval; the final curves have one point per update."""
    config = tmp_path / "config.yaml"
    config.write_text(KILL_RUN)
    run = tmp_path / "run"
    checkpoints = run / "checkpoints"
    rng = random.Random(9)
    args = ["--config", str(config), f"run_dir={run}"]
    resumed_at = 0
    for _ in range(5):
        process = start_training(*args)
        wait_for_checkpoint(process, checkpoints, beyond=resumed_at + KILL_INTERVAL * rng.randint(0, 2))
        time.sleep(rng.uniform(0.0, 0.5))
        process.kill()
        process.communicate()
        assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"

        (events,) = run.glob(f"events.out.tfevents.*.{process.pid}.*")
        logged = last_logged_step(events)
        point = find_resume_point(run)
        print(
            f"killed at logged step {logged}; resumes from {point.checkpoint.name} "
            f"at step {point.global_step}"
        )
        assert point.global_step <= logged <= point.global_step + KILL_INTERVAL * KILL_BATCH
        assert point.global_step >= resumed_at * KILL_BATCH  # progress was kept
        resumed_at = point.update
        args = ["--resume", str(run)]

    process = start_training(*args)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert err == ""  # no fallback warning: SIGKILL never leaves a damaged checkpoint behind
    assert load_checkpoint(checkpoints / "final.pt")["global_step"] == KILL_TOTAL
    assert not list(checkpoints.glob("*.tmp")) and len(update_checkpoints(checkpoints)) <= 2

    accumulator = EventAccumulator(str(run), size_guidance={"scalars": 0})
    accumulator.Reload()
    for tag in ("train/loss", "rollout/ep_rew_mean", "time/fps"):
        steps = [e.step for e in accumulator.Scalars(tag)]
        first = steps[0]
        assert first <= 2 * KILL_BATCH, tag  # rollout/ep_rew_mean starts at the first finished episode
        # increasing, no duplicate, no gap
        assert steps == list(range(first, KILL_TOTAL + 1, KILL_BATCH)), tag
