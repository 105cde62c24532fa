"""bench.phases: the timers count what a tiny CartPole run does, and leave nothing wrapped."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from bench import phases

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_phase_counts_follow_the_run(tmp_path, capsys):
    before = [owner.__dict__[attribute] for owner, attribute, _ in phases.wrapped_phases()]
    # 2 envs × 16 steps = 32 env steps an update, 3 updates, 2 epochs × 2 minibatches each.
    argv = [
        "--config", str(CONFIGS / "cartpole.yaml"), "--no-progress", f"run_dir={tmp_path / 'run'}",
        "total_timesteps=96", "env.num_envs=2", "ppo.num_steps=16", "ppo.update_epochs=2",
        "ppo.num_minibatches=2", "torch_threads=1",
    ]
    threads = torch.get_num_threads()
    try:
        assert phases.main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    rows = {}
    for line in capsys.readouterr().err.splitlines():
        match = re.match(r"rank 0: (\S+(?: \S+)?)\s+([\d.]+)\s+(\d+)\s+([\d.]+)$", line)
        if match:
            rows[match[1]] = (float(match[2]), int(match[3]))
    assert rows["update"][1] == 3 and rows["collect"][1] == 3
    assert rows["env step"][1] == 3 * 16
    assert rows["objective"][1] == rows["backward"][1] == rows["optimizer"][1] == 3 * 2 * 2
    assert rows["rank wait"][1] == 0  # one process: nothing summed over ranks
    assert rows["collect"][0] >= rows["env step"][0] > 0  # collect holds the env steps
    # Nothing stays wrapped or hooked after the run: an optimizer made now counts no more steps.
    assert [owner.__dict__[attribute] for owner, attribute, _ in phases.wrapped_phases()] == before
    clock = phases.PhaseClock()
    with clock.timing_optimizer_steps("optimizer"):
        pass
    parameter = torch.nn.Parameter(torch.zeros(1))
    parameter.grad = torch.ones(1)
    torch.optim.Adam([parameter]).step()
    assert clock.calls["optimizer"] == 0
