"""Resuming a run: what a checkpoint restores, which checkpoint is chosen, how the logs join.

What can be asserted honestly: a checkpoint restores everything but the envs' mid-episode state
(networks, Adam moments and step counts, the schedule position, every random generator, KL
coefficients, the reference policy, the episode window). The resumed run restarts its episodes
from a reset seeded by (seed, update); an uninterrupted run that restarts its episodes at the same
point in the same way must then end bit for bit where the resumed one ends. An uninterrupted run
that does not restart them plays other games after that point, so with it only the step count
can be compared. GRPO resets every env every round, so there a resume is exact with no caveat.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.config import config_from_dict
from agents.run.checkpoint import load_checkpoint, prune_checkpoints, save_checkpoint
from agents.run.collectors import SegmentCollector
from agents.run.logger import TrainingLogger
from agents.run.resume import env_reset_seed, find_resume_point
from agents.run.trainer import train

CARTPOLE = {
    "env_id": "CartPole-v1",
    "seed": 3,
    "total_timesteps": 6 * 2 * 32,  # six updates
    "torch_threads": 1,
    "checkpoint_interval": 3,
    "keep_checkpoints": 0,
    "stats_window": 5,  # small, so the window rolls and its restore matters
    "env": {"num_envs": 2, "vectorization": "sync"},
    "ppo": {"num_steps": 32, "num_minibatches": 2, "update_epochs": 2},
}

GRPO = {
    "env_id": "TokenGen/DigitSort-v0",
    "algo": "grpo",
    "seed": 5,
    "total_timesteps": 200,
    "torch_threads": 1,
    "checkpoint_interval": 2,
    "keep_checkpoints": 0,
    "env": {"num_envs": 8, "kwargs": {"k": 3}, "bootstrap_truncated": False},
    "network": {"kind": "transformer", "d_model": 16, "n_layers": 1, "n_heads": 2},
    "ppo": {
        "num_minibatches": 2, "update_epochs": 1, "vf_coef": 0.0, "norm_adv": False, "learning_rate": 1e-3,
    },
    "rlhf": {
        "group_size": 4, "kl_coef": 0.05, "kl_estimator": "k3", "adaptive_kl": True, "kl_horizon": 100,
        "sft_steps": 3, "sft_batch_size": 8, "sample_interval": 1,
    },
}


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # train() sets it for the whole process


def run_config(base: dict, run_dir: Path) -> object:
    return config_from_dict({**base, "run_dir": str(run_dir)})


def resume(run_dir: Path):
    point = find_resume_point(run_dir)
    return train(point.config, progress=False, resume=point)


def copy_run_up_to(source: Path, target: Path, checkpoint: str) -> None:
    """A run dir as a process killed right after writing `checkpoint` could have left it."""
    (target / "checkpoints").mkdir(parents=True)
    shutil.copy(source / "config.yaml", target / "config.yaml")
    shutil.copy(source / "checkpoints" / checkpoint, target / "checkpoints" / checkpoint)


def scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of an event file or run dir, as TensorBoard shows it (purges applied);
    NaN values (GRPO's explained variance) read as the string "nan" so that they compare equal."""
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(e.step, "nan" if math.isnan(e.value) else e.value) for e in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def assert_same_tensors(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_same_final_state(run_a: Path, run_b: Path) -> None:
    a = load_checkpoint(run_a / "checkpoints" / "final.pt")
    b = load_checkpoint(run_b / "checkpoints" / "final.pt")
    for key in (
        "model", "optimizer", "reference", "update", "global_step", "kl_coef", "penalty_kl_coef", "resume"
    ):
        assert_same_tensors(a[key], b[key], key)


def test_resumed_run_ends_bit_for_bit_where_a_run_restarting_its_episodes_there_ends(tmp_path, monkeypatch):
    """Run A trains six updates, restarting its episodes after update 3 exactly as a resume does;
    run B is A's run dir as a crash after update 3 leaves it, resumed. Everything a checkpoint
    holds must round-trip for B to end with A's weights, Adam state, generators and logs."""
    restarted, collected = [], []

    def restart_episodes_after_update_3(self):
        if len(collected) == 3 and not restarted:
            self.restart(env_reset_seed(self.config.seed, 3))
            restarted.append(True)
        collected.append(True)
        return original(self)

    original = SegmentCollector.collect
    with monkeypatch.context() as patch:
        patch.setattr(SegmentCollector, "collect", restart_episodes_after_update_3)
        result_a = train(run_config(CARTPOLE, tmp_path / "a"), progress=False)
    assert restarted

    copy_run_up_to(tmp_path / "a", tmp_path / "b", "update_000003.pt")
    result_b = resume(tmp_path / "b")

    assert result_b.global_step == result_a.global_step == CARTPOLE["total_timesteps"]
    assert (result_b.episodes, result_b.mean_return) == (result_a.episodes, result_a.mean_return)
    assert_same_final_state(tmp_path / "a", tmp_path / "b")
    # The resumed process logs exactly what A logged after the checkpoint (time/fps aside).
    (events_b,) = (tmp_path / "b").glob("events.out.tfevents.*")
    logged_a, logged_b = scalars(tmp_path / "a"), scalars(events_b)
    checkpoint_step = 3 * 64
    for tag, points in logged_b.items():
        assert points[0][0] == checkpoint_step + 64
        if tag != "time/fps":
            assert points == [p for p in logged_a[tag] if p[0] > checkpoint_step], tag

    # Without the restart, the uninterrupted run plays other games after update 3: only its
    # length can be compared.
    plain = train(run_config(CARTPOLE, tmp_path / "c"), progress=False)
    assert plain.global_step == result_b.global_step
    assert load_checkpoint(tmp_path / "c" / "checkpoints" / "final.pt")["update"] == 6


def grpo_ptx_config(tmp_path: Path) -> dict:
    """GRPO on the sentiment env with a PPO-ptx term over a small corpus written to tmp_path."""
    from envs.sentiment_corpus import build_corpus
    from envs.token_tasks import SentimentTask

    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps(build_corpus(SentimentTask(), 50, 0.2, seed=0).to_dict()))
    return {
        **GRPO,
        "env_id": "TokenGen/Sentiment-v0",
        "env": {"num_envs": 8, "kwargs": {"max_new_tokens": 4}, "bootstrap_truncated": False},
        "rlhf": {**GRPO["rlhf"], "ptx_coef": 0.5, "ptx_batch_size": 4, "ptx_corpus": str(corpus)},
    }


@pytest.mark.parametrize("ptx", [False, True], ids=["grpo", "grpo_ptx"])
def test_grpo_resume_is_exact(tmp_path, ptx):
    """GRPO resets every env every round (prompts drawn from the checkpointed generator), so
    the resumed run equals the uninterrupted one: weights, reference policy, adaptive β, logs.
    With PPO-ptx the corpus batches come from that generator too (train/ptx_loss must match)."""
    config = grpo_ptx_config(tmp_path) if ptx else GRPO
    uninterrupted = train(run_config(config, tmp_path / "a"), progress=False)
    copy_run_up_to(tmp_path / "a", tmp_path / "b", "update_000002.pt")
    resumed = resume(tmp_path / "b")
    assert resumed.global_step == uninterrupted.global_step
    assert_same_final_state(tmp_path / "a", tmp_path / "b")
    checkpoint_step = load_checkpoint(tmp_path / "b" / "checkpoints" / "update_000002.pt")["global_step"]
    logged_a, logged_b = scalars(tmp_path / "a"), scalars(tmp_path / "b")
    assert set(logged_b) == set(logged_a) - {"sft/loss"}  # the SFT stage is not played again
    assert ("train/ptx_loss" in logged_b) == ptx
    for tag in logged_b:
        if tag != "time/fps":
            assert logged_b[tag] == [p for p in logged_a[tag] if p[0] > checkpoint_step], tag


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    for update in (1, 2, 3, 10, 11):
        save_checkpoint(tmp_path / f"update_{update:06d}.pt", {"model": {}})
    save_checkpoint(tmp_path / "final.pt", {"model": {}})
    prune_checkpoints(tmp_path, keep=0)
    assert len(list(tmp_path.glob("*.pt"))) == 6
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == [
        "final.pt",
        "update_000010.pt",
        "update_000011.pt",
    ]


def test_training_keeps_the_last_k_periodic_checkpoints(tmp_path):
    train(
        run_config({**CARTPOLE, "checkpoint_interval": 1, "keep_checkpoints": 2}, tmp_path / "run"),
        progress=False,
    )
    names = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert names == ["final.pt", "update_000005.pt", "update_000006.pt"]


def corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    train(run_config(CARTPOLE, tmp_path / "run"), progress=False)
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / "final.pt").unlink()
    corrupt(checkpoints / "update_000006.pt")
    point = find_resume_point(tmp_path / "run")
    assert point.checkpoint.name == "update_000003.pt" and point.global_step == 3 * 64
    assert [s.path.name for s in point.skipped] == ["update_000006.pt"]
    assert "checksum mismatch" in point.skipped[0].reason

    result = train(point.config, progress=False, resume=point)
    assert result.global_step == CARTPOLE["total_timesteps"]
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (
        f"warning: cannot load checkpoint {checkpoints / 'update_000006.pt'}: checksum mismatch (the file is "
        "corrupt); skipped (moved to update_000006.pt.corrupt)"
    )
    assert (
        err[1].startswith("warning: resuming from the previous good checkpoint")
        and err[1].endswith("update_000003.pt")
    )
    # Set aside, so that it is never counted again; the resumed run wrote its own update 6.
    assert (checkpoints / "update_000006.pt.corrupt").is_file()
    assert load_checkpoint(checkpoints / "update_000006.pt")["update"] == 6


def test_resumed_logs_have_no_duplicate_or_missing_points(tmp_path):
    """A crash after the checkpoint at step 192 left points up to 320 in the event file; the
    resumed process hides them (purge) and logs 256, 320, 384 again: one point per update."""
    run = tmp_path / "run"
    train(run_config(CARTPOLE, run), progress=False)
    (run / "checkpoints" / "final.pt").unlink()
    (run / "checkpoints" / "update_000006.pt").unlink()
    before = scalars(run)["train/loss"]
    resume(run)
    after = scalars(run)["train/loss"]
    steps = [step for step, _ in after]
    assert steps == [64 * n for n in range(1, 7)]
    assert after[:3] == before[:3]  # points up to the checkpoint are the crashed process's own


def test_a_writer_reopened_within_the_second_still_sorts_after_the_first(tmp_path):
    """Event files sort by name: creation second, host, pid, then an unpadded counter. Counters 9
    and 10 in one second would put the resumed file first (and purge the wrong points): the
    logger waits for the next second instead."""
    from tensorboard.summary.writer import event_file_writer

    counter = event_file_writer._global_uid.get()
    while set(str(counter + 1)) != {"9"}:  # the next two writers get counters 9 and 10 (or 99 and 100)
        counter = event_file_writer._global_uid.get()
    test_logger_purge_hides_points_of_the_discarded_future(tmp_path)
    counters = [int(path.name.rsplit(".", 1)[1]) for path in sorted(tmp_path.iterdir())]
    assert counters == [counter + 1, counter + 2]


def test_an_event_file_stamped_in_the_future_is_not_waited_for(tmp_path):
    """A run dir from a host whose clock runs ahead: opening a logger there must not hang."""
    (tmp_path / f"events.out.tfevents.{int(time.time()) + 3600}.otherhost.1.0").write_bytes(b"")
    started = time.time()
    TrainingLogger(tmp_path, 100, 10, progress=None).close()
    assert time.time() - started < 5


def test_logger_purge_hides_points_of_the_discarded_future(tmp_path):
    first = TrainingLogger(tmp_path, 100, 10, progress=False)
    for step in range(1, 11):
        first.log_update(step, {"x": float(step)})
    first.close()
    second = TrainingLogger(tmp_path, 100, 10, progress=False, start_step=6, purge_step=7)
    for step in range(7, 9):
        second.log_update(step, {"x": -float(step)})
    second.close()
    assert scalars(tmp_path)["x"] == [(s, float(s)) for s in range(1, 7)] + [(7, -7.0), (8, -8.0)]
