"""agents/run/evaluation.py and agents/run/video.py: evaluation envs, scores against an independent loop,
videos read back frame by frame, the trainer's clip and its TensorBoard record."""

from __future__ import annotations

import io

import imageio
import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from agents.config import TrainConfig
from agents.networks.transformer import TransformerActorCritic
from agents.run.checkpoint import load_agent
from agents.run.evaluation import (
    RestartAfterLifeLossWrapper,
    eval_video_fps,
    make_eval_env,
    play_episodes,
    record_video_clip,
)
from agents.run.video import log_video
from envs.atari_wrappers import ClipRewardWrapper, EpisodicLifeWrapper
from envs.vector import make_single_env
from tests.reference_play import reference_play
from tests.tiny_runs import tiny_run


@pytest.fixture(autouse=True)
def quiet_offscreen_rendering(monkeypatch):
    # pygame (CartPole's renderer) would look for a display and a sound device, and say so on stderr.
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # shared machine: small nets are far faster on one thread
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def breakout(tmp_path_factory):
    return load_agent(tiny_run(tmp_path_factory, "breakout") / "checkpoints" / "final.pt")


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    return load_agent(tiny_run(tmp_path_factory, "cartpole") / "checkpoints" / "final.pt")


def wrapper_types(env) -> list[type]:
    types = []
    while hasattr(env, "env"):
        types.append(type(env))
        env = env.env
    return types


def read_mp4(path) -> list[np.ndarray]:
    with imageio.get_reader(str(path), format="FFMPEG") as reader:
        return [frame for frame in reader]


def test_atari_eval_env_is_whole_games_with_raw_scores(breakout):
    _, config = breakout
    training = make_single_env(config.env_id, config.env)
    evaluation = make_eval_env(config, render_mode="rgb_array")
    assert EpisodicLifeWrapper in wrapper_types(training) and ClipRewardWrapper in wrapper_types(training)
    layers = wrapper_types(evaluation)
    assert EpisodicLifeWrapper not in layers and ClipRewardWrapper not in layers
    assert layers[0] is RestartAfterLifeLossWrapper  # training restarted lives by itself
    assert evaluation.observation_space == training.observation_space  # what the network was trained on
    evaluation.reset(seed=0)
    assert evaluation.render().shape == (210, 160, 3)  # the original screen, not the 84×84 input
    training.close()
    evaluation.close()


def test_video_fps_is_real_speed(breakout, cartpole):
    assert eval_video_fps(breakout[1]) == 15.0  # 60 Hz console, one frame per 4-frame agent step
    assert eval_video_fps(cartpole[1]) == 50.0  # CartPole's metadata["render_fps"] (tau = 0.02 s)


# Stochastic play is checked on CartPole only: a sampled Breakout game is several times longer.
@pytest.mark.parametrize("game, deterministic", [("cartpole", True), ("cartpole", False), ("breakout", True)])
def test_scores_match_an_independent_loop(game, deterministic, request):
    agent, config = request.getfixturevalue(game)
    episodes = play_episodes(agent, config, episodes=2, seed=11, deterministic=deterministic)
    expected = reference_play(agent, config, episodes=2, seed=11, deterministic=deterministic)
    assert [(e["return"], e["length"]) for e in episodes] == [(r, n) for r, n, _ in expected]
    assert [e["seed"] for e in episodes] == [11, 12]
    assert not any(e["truncated"] for e in episodes)
    if game == "breakout":
        assert all(e["length"] > 100 for e in episodes)  # five lives, not one


def test_videos_hold_every_frame_played(breakout, tmp_path):
    agent, config = breakout
    (episode,) = play_episodes(agent, config, 1, seed=3, deterministic=True, video_dir=tmp_path / "videos")
    assert episode["video"] == str(tmp_path / "videos" / "episode_000.mp4")
    frames = read_mp4(episode["video"])
    # One frame after the reset and one after each agent step, at the screen's own size.
    assert len(frames) == episode["frames"] == episode["length"] + 1
    assert frames[0].shape == (210, 160, 3)
    with imageio.get_reader(episode["video"], format="FFMPEG") as reader:
        assert reader.get_meta_data()["fps"] == 15.0
    # Recording does not change the game.
    (unrecorded,) = play_episodes(agent, config, 1, seed=3, deterministic=True)
    assert (unrecorded["return"], unrecorded["length"]) == (episode["return"], episode["length"])


def test_record_video_clip_leaves_the_trainer_state_alone(cartpole, tmp_path):
    agent, config = cartpole
    agent.train()
    rng_state = torch.get_rng_state()
    frames, fps = record_video_clip(
        agent, config, seed=5, path=tmp_path / "clips" / "update_1.mp4", max_steps=20
    )
    assert fps == 50  # CartPole's render_fps; a short game keeps every frame
    assert torch.equal(torch.get_rng_state(), rng_state) and agent.training
    assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[1:] == (400, 600, 3)
    assert 2 <= len(frames) <= 21  # reset frame + at most max_steps steps
    decoded = np.stack(read_mp4(tmp_path / "clips" / "update_1.mp4"))
    assert decoded.shape == frames.shape
    # H.264 is lossy, but the picture must be the same one.
    assert np.abs(decoded.astype(np.int16) - frames).mean() < 3.0


def test_long_clips_are_thinned_for_tensorboard_but_whole_on_disk(cartpole, tmp_path):
    agent, config = cartpole
    path = tmp_path / "clip.mp4"
    frames, fps = record_video_clip(agent, config, seed=5, path=path, max_steps=20, max_kept_frames=8)
    written = len(read_mp4(path))
    # 8 kept at most: each overflow halves what is kept and doubles the stride (and divides fps)
    assert len(frames) <= 8 and fps < 50
    stride = round(50 / fps)
    assert len(frames) == len(range(0, written, stride))


def test_log_video_is_an_animated_image_in_tensorboard(tmp_path):
    frames = np.zeros((6, 20, 30, 3), dtype=np.uint8)
    frames[np.arange(6), :, np.arange(6) * 5] = 255  # a moving bar, so frames differ
    writer = SummaryWriter(str(tmp_path))
    log_video(writer, "eval/video", frames, step=42, fps=15)
    writer.close()
    accumulator = EventAccumulator(str(tmp_path), size_guidance={"images": 0})
    accumulator.Reload()
    (record,) = accumulator.Images("eval/video")
    assert (record.step, record.width, record.height) == (42, 30, 20)
    gif = Image.open(io.BytesIO(record.encoded_image_string))
    assert gif.format == "GIF" and gif.n_frames == 6
    gif.seek(3)
    assert np.array_equal(np.asarray(gif.convert("RGB")), frames[3])


def test_token_env_episodes_are_texts():
    config = TrainConfig(env_id="TokenGen/DigitSort-v0")
    env = make_eval_env(config)
    torch.manual_seed(0)
    agent = TransformerActorCritic.from_spaces(
        env.observation_space, int(env.action_space.n), d_model=16, n_layers=1
    )
    env.close()
    episodes = play_episodes(agent, config, episodes=3, seed=4, deterministic=False)
    expected = reference_play(agent, config, episodes=3, seed=4, deterministic=False)
    assert [(e["return"], e["length"], e["text"]) for e in episodes] == expected
    assert all(isinstance(e["text"], str) and e["prompt"] for e in episodes)
    with pytest.raises(ValueError, match="texts"):
        play_episodes(agent, config, 1, seed=0, deterministic=True, video_dir="unused")
