"""capture_video during training: MP4s under videos/step_<env steps>.mp4, a clip in TensorBoard,
and the training itself unchanged by the recording."""

import os

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents.config import config_from_dict
from agents.run.trainer import train
from tests.test_evaluation import read_mp4

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # CartPole renders with pygame; no screen here


def run(tmp_path, name: str, capture: bool):
    config = config_from_dict(
        {
            "env_id": "CartPole-v1",
            "seed": 5,
            "total_timesteps": 4 * 4 * 64,  # four updates
            "run_dir": str(tmp_path / name),
            "capture_video": capture,
            "video_interval": 2,
            "env": {"num_envs": 4},
            "ppo": {"num_steps": 64},
        }
    )
    return train(config, progress=False)


def test_videos_are_written_and_logged_without_changing_training(tmp_path):
    recorded = run(tmp_path, "recorded", capture=True)
    plain = run(tmp_path, "plain", capture=False)
    videos = sorted(p.name for p in (recorded.run_dir / "videos").iterdir())
    assert videos == ["step_1024.mp4", "step_512.mp4"]  # after updates 2 and 4 (256 steps each)
    frames = read_mp4(recorded.run_dir / "videos" / "step_512.mp4")
    assert len(frames) >= 2 and frames[0].shape == (400, 600, 3)  # CartPole's own RGB picture
    events = EventAccumulator(str(recorded.run_dir), size_guidance={"images": 0})
    events.Reload()
    assert [image.step for image in events.Images("eval/video")] == [512, 1024]
    assert not (plain.run_dir / "videos").exists()
    # The evaluation games run in envs of their own and leave the RNGs alone: same training.
    a, b = recorded.agent.state_dict(), plain.agent.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
