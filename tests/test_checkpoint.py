"""Checkpoints: save → load gives identical actions; loading never runs pickled code."""

import pickle
import zipfile

import pytest
import torch

from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.config import config_from_dict
from agents.build import load_agent
from agents.trainer import train


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    config = config_from_dict(
        {"env_id": "CartPole-v1", "total_timesteps": 512, "run_dir": str(tmp_path / "run"), "ppo": {"num_steps": 32}}
    )
    trained = train(config, progress=False).agent
    loaded, loaded_config = load_agent(tmp_path / "run" / "checkpoints" / "final.pt")
    assert loaded_config.env_id == "CartPole-v1"
    obs = torch.randn(64, 4)
    with torch.no_grad():
        logits_a, value_a = trained(obs)
        logits_b, value_b = loaded(obs)
        assert torch.equal(logits_a, logits_b) and torch.equal(value_a, value_b)
        assert torch.equal(trained.act(obs, deterministic=True)[0], loaded.act(obs, deterministic=True)[0])
        torch.manual_seed(0)
        sampled_a = trained.act(obs)[0]
        torch.manual_seed(0)
        assert torch.equal(sampled_a, loaded.act(obs)[0])


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # creates a file if it is ever unpickled


def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"model": _RunsCode(marker)}, path)  # a torch zip whose data.pkl holds the payload
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps({"model": _RunsCode(marker)}))  # a bare pickle, not a zip
    with pytest.raises(CheckpointError):
        load_checkpoint(raw)
    assert not marker.exists()


def test_truncated_and_missing_checkpoints_are_refused(tmp_path):
    path = tmp_path / "ok.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}})
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(1000))
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.pt")
    assert not list(tmp_path.glob("*.tmp"))  # the atomic write leaves no temporary file
    assert zipfile.is_zipfile(path)
