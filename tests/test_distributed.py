"""Data-parallel PPO (agents/run/distributed.py) with gloo on loopback: two ranks take one process's
update; a 2-rank CartPole run learns; two launchers act as two nodes; SIGTERM stops every rank
after one checkpoint and the run resumes; a rank that raises ends the run with an `error:` line."""

from __future__ import annotations

import dataclasses
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from agents.config import PPOConfig
from agents.core.batch import Batch
from agents.core.update import ppo_update
from agents.networks.mlp import MLPActorCritic
from agents.run import distributed
from agents.run.distributed import Distributed
from tests.test_resume import scalars

# Under `make test`'s two pytest workers these tests run one after another on one worker: each
# starts two ranks of its own, and two such runs at once would put four processes on two cores.
pytestmark = pytest.mark.xdist_group("torchrun")

REPO = Path(__file__).resolve().parent.parent
TORCHRUN = Path(sys.executable).parent / "torchrun"
PPO = PPOConfig(num_steps=16, num_minibatches=2, update_epochs=3, clip_value_loss=False)
SAMPLES = 64


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_agent() -> MLPActorCritic:
    import gymnasium as gym
    import numpy as np

    torch.manual_seed(0)
    observations = gym.spaces.Box(-1, 1, (4,), np.float32)
    return MLPActorCritic(observations, gym.spaces.Discrete(3), [32, 32], "tanh", False)


def make_batch(seed: int) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(
        obs=torch.randn(SAMPLES, 4, generator=g), actions=torch.randint(0, 3, (SAMPLES,), generator=g),
        logp=torch.full((SAMPLES,), -1.0986) + 0.1 * torch.randn(SAMPLES, generator=g),
        values=torch.randn(SAMPLES, generator=g), advantages=2 + 3 * torch.randn(SAMPLES, generator=g),
        returns=torch.randn(SAMPLES, generator=g),
    )


# Fixed minibatches: the single process's minibatch i is [rank 0's part | rank 1's part]; with one
# minibatch per epoch (ppo_update then normalises the whole batch once), all samples shuffled.
ORDERS = {
    2: [torch.arange(0, SAMPLES, 2), torch.arange(1, SAMPLES, 2)],  # 2 minibatches of 32
    1: [torch.randperm(SAMPLES, generator=torch.Generator().manual_seed(3))],
}


def whole(batch, n):
    return ORDERS[n]


def rank_part(rank: int):
    half = SAMPLES // 2

    def sampler(local_batch, n):  # local sample j is global sample rank·half + j
        return [idx[(idx >= rank * half) & (idx < (rank + 1) * half)] - rank * half for idx in ORDERS[n]]

    return sampler


def worker(rank: int, port: int, out: str, case: dict) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    for name, value in case["module"].items():
        setattr(distributed, name, value)
    ppo = case["ppo"]
    torch.set_num_threads(1)
    sync = Distributed(rank, 2, rank)
    agent = make_agent()
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-2, eps=1e-5)
    full = make_batch(1)
    half = SAMPLES // 2
    local = Batch(**{k: v[rank * half:(rank + 1) * half] for k, v in vars(full).items() if v is not None})
    ppo_update(agent, optimizer, local, ppo, 0.2, None, rank_part(rank), sync=sync)
    after_one = {k: v.clone() for k, v in agent.state_dict().items()}
    # Then several updates on different data per rank: the weights must stay identical.
    for update in range(3):
        batch = make_batch(10 + 2 * update + rank)
        ppo_update(agent, optimizer, batch, ppo, 0.2, None, rank_part(0), sync=sync)
    torch.save({"after_one": after_one, "after_four": agent.state_dict()}, f"{out}/rank{rank}.pt")
    # As the trainer does: a barrier first, so that neither rank tears gloo down while the other's
    # last collectives may still be in flight (a rank done first was seen to abort in teardown).
    sync.wait_for_all()
    sync.close()


# The MLP's gradients summed as one bucket after backward (the default size: gathered, it is
# small), and as 5 buckets of ≥ 100 elements, the heads' sent while backward still computes the
# trunks: all-reduced (GATHER_ELEMENTS 0), or the small ones gathered and the rest all-reduced.
# One case takes the whole batch as its one minibatch per epoch.
@pytest.mark.parametrize(
    "bucket_elements, buckets, gather_elements, num_minibatches",
    [(None, 1, None, 2), (100, 5, 0, 2), (100, 5, 600, 2), (None, 1, None, 1)],
)
def test_two_ranks_take_one_process_update_and_stay_identical(
    tmp_path, one_torch_thread, monkeypatch, bucket_elements, buckets, gather_elements, num_minibatches
):
    overrides = {"BUCKET_ELEMENTS": bucket_elements, "GATHER_ELEMENTS": gather_elements}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    for name, value in overrides.items():
        monkeypatch.setattr(distributed, name, value)
    split = distributed.GradientBuckets(list(make_agent().parameters()), 2)
    split.remove()
    assert len(split.buckets) == buckets
    ppo = dataclasses.replace(PPO, num_minibatches=num_minibatches)
    agent = make_agent()
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-2, eps=1e-5)
    ppo_update(agent, optimizer, make_batch(1), ppo, 0.2, None, whole)
    single = agent.state_dict()

    args = (free_port(), str(tmp_path), {"module": overrides, "ppo": ppo})
    mp.start_processes(worker, args=args, nprocs=2, start_method="spawn")
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name, tensor in single.items():
        assert torch.allclose(ranks[0]["after_one"][name], tensor, atol=1e-6), name
        assert torch.equal(ranks[0]["after_four"][name], ranks[1]["after_four"][name]), name
    moved = max((ranks[0]["after_one"][k] - make_agent().state_dict()[k]).abs().max() for k in single)
    assert moved > 1e-3  # the update did something to compare


# --------------------------------------------------------------------------- torchrun runs

ENV = {"PYTHONPATH": str(REPO), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}


def torchrun(cwd: Path, *argv: str, nproc: int = 2, extra: tuple[str, ...] = ("--standalone",)):
    command = [str(TORCHRUN), *extra, f"--nproc_per_node={nproc}", str(REPO / "train.py"), *argv]
    return subprocess.Popen(
        command, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_a_two_rank_cartpole_run_learns(tmp_path):
    # stop_at_return ends the run at the first update that reaches 475 (the learning-rate schedule
    # still runs to 100k): the test takes only as long as learning does.
    process = torchrun(tmp_path, "--config", str(REPO / "configs/cartpole.yaml"), "--no-progress",
                       "run_dir=run", "total_timesteps=100000", "stop_at_return=475")
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    curve = scalars(tmp_path / "run")["rollout/ep_rew_mean"]
    reached = [step for step, value in curve if value >= 475]
    assert reached and reached[0] <= 100096, curve[-5:]  # 391 updates of 2 ranks × 4 envs × 32 steps
    assert curve[-1][0] == reached[0]  # every rank stopped at the same update, the one that reached it
    assert reached[0] % (2 * 4 * 32) == 0  # steps count both ranks' envs


def test_two_launchers_as_two_nodes_train_one_run(tmp_path):
    port = free_port()
    args = ("--config", str(REPO / "configs/cartpole.yaml"), "--no-progress", "run_dir=run",
            "total_timesteps=4096")
    nodes = [
        torchrun(tmp_path, *args, nproc=1, extra=(
            "--nnodes=2", f"--node_rank={rank}", "--master_addr=127.0.0.1", f"--master_port={port}"
        ))
        for rank in (0, 1)
    ]
    for node in nodes:
        out, err = node.communicate(timeout=300)
        assert node.returncode == 0, err
    assert (tmp_path / "run" / "checkpoints" / "final.pt").is_file()
    steps = [step for step, _ in scalars(tmp_path / "run")["train/value_loss"]]
    assert steps == list(range(256, 4096 + 1, 256))  # each update counts both nodes' envs


def test_sigterm_stops_every_rank_after_one_checkpoint_and_the_run_resumes(tmp_path):
    args = ("--config", str(REPO / "configs/cartpole.yaml"), "--no-progress", "run_dir=run",
            "total_timesteps=20000", "checkpoint_interval=0", "log_interval=1")
    process = torchrun(tmp_path, *args)
    # Wait for a few updates, then stop the launcher as a cluster scheduler would.
    deadline = time.time() + 120
    while time.time() < deadline:
        events = list((tmp_path / "run").glob("events.out.tfevents.*"))
        if events and events[0].stat().st_size > 4000:
            break
        time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    checkpoints = sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("*.pt"))
    assert len(checkpoints) == 1 and checkpoints[0].startswith("update_"), (checkpoints, err)
    assert "interrupted by SIGTERM" in err
    resumed = torchrun(tmp_path, "--resume", "run", "--no-progress")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    steps = [step for step, _ in scalars(tmp_path / "run")["train/value_loss"]]
    assert steps == sorted(set(steps)) and steps[-1] >= 20000  # no duplicated points


def test_a_rank_that_raises_ends_the_run_with_an_error_line(tmp_path):
    process = torchrun(tmp_path, "--config", str(REPO / "configs/cartpole.yaml"), "--no-progress",
                       "run_dir=run", "env_id=tests.space_envs:tests/FailOnRank1-v0", "dist_timeout=30")
    started = time.time()
    out, err = process.communicate(timeout=300)
    assert process.returncode != 0
    assert time.time() - started < 120
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors and "rank 1" in errors[0], err


def test_token_envs_and_uneven_splits_are_refused_before_any_rank_starts():
    from agents.config import ConfigError, config_from_dict
    from agents.run.distributed import check_split

    with pytest.raises(ConfigError, match="token envs"):
        check_split(config_from_dict({"env_id": "TokenGen/DigitSort-v0", "env": {"num_envs": 8}}), 2)
    with pytest.raises(ConfigError, match="does not split across 3 ranks"):
        check_split(config_from_dict({"env_id": "CartPole-v1", "env": {"num_envs": 8}}), 3)
