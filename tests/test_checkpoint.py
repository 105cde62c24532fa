"""Checkpoints: save → load gives identical actions; loading never runs pickled code."""

import pickle
import zipfile

import pytest
import torch

from agents.config import config_from_dict
from agents.run.checkpoint import CheckpointError, load_agent, load_checkpoint, save_checkpoint
from agents.run.trainer import train


def test_save_load_round_trip_gives_identical_actions(tmp_path):
    config = config_from_dict(
        {
            "env_id": "CartPole-v1",
            "total_timesteps": 512,
            "run_dir": str(tmp_path / "run"),
            "ppo": {"num_steps": 32},
        }
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


def test_a_flipped_byte_fails_the_checksum(tmp_path):
    path = tmp_path / "ok.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(1000)}})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the tensor bytes, where torch's zip reader checks nothing
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        load_checkpoint(path)


def test_a_crafted_pickle_with_a_matching_checksum_never_runs(tmp_path):
    """The checksum only detects damage; the payload itself is still read weights-only."""
    import hashlib
    import io

    marker = tmp_path / "pwned"
    buffer = io.BytesIO()
    torch.save({"model": _RunsCode(marker)}, buffer)
    payload = buffer.getvalue()
    wrapper = {
        "format": "agents-checkpoint/2",
        "sha256": hashlib.sha256(payload).hexdigest(),
        "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8),
    }
    torch.save(wrapper, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_checkpoints_of_the_older_layout_still_load(tmp_path):
    torch.save({"model": {"w": torch.ones(3)}}, tmp_path / "old.pt")  # no checksum wrapper
    assert torch.equal(load_checkpoint(tmp_path / "old.pt")["model"]["w"], torch.ones(3))


def plain_data(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and plain_data(v) for k, v in value.items())
    if isinstance(value, list):
        return all(plain_data(v) for v in value)
    return value is None or isinstance(value, (torch.Tensor, bool, int, float, str))


def test_a_training_checkpoint_is_plain_data_in_both_layers(tmp_path):
    """Random generator states and the episode window are tensors, lists and numbers: both the
    file and its payload open with a bare torch.load(weights_only=True)."""
    import io

    config = config_from_dict(
        {"total_timesteps": 128, "torch_threads": 1, "run_dir": str(tmp_path / "run"),
         "env": {"num_envs": 2}, "ppo": {"num_steps": 64}}
    )
    threads = torch.get_num_threads()
    try:
        train(config, progress=False)
    finally:
        torch.set_num_threads(threads)
    outer = torch.load(tmp_path / "run" / "checkpoints" / "final.pt", weights_only=True)
    state = torch.load(io.BytesIO(outer["payload"].numpy().tobytes()), weights_only=True)
    assert plain_data(state["resume"])  # the rest is state dicts, which torch saves as tensors
    rng = state["resume"]["rng"]
    assert set(rng) >= {"python", "numpy", "torch", "minibatch", "prompts"}
    assert state["resume"]["logger"]["episodes"] > 0 and state["global_step"] == 128
