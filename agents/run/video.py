"""Video output of played games: MP4 files (imageio + ffmpeg) and animated clips in TensorBoard.

Frame rate: a video is written at the game's real speed when one frame is recorded per agent
step. Atari consoles draw 60 frames a second and the agent acts every `frame_skip` of them, so an
Atari video runs at ATARI_FRAME_RATE / frame_skip (15 fps with the usual skip of 4). Other envs
declare their own speed in metadata["render_fps"] (CartPole: 50); DEFAULT_FPS serves envs that
declare none.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import TracebackType

import imageio
import numpy as np
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter

ATARI_FRAME_RATE = 60  # frames per second of the Atari 2600 (NTSC) emulator
DEFAULT_FPS = 30  # envs whose metadata names no render_fps


def video_fps(is_atari_game: bool, frame_skip: int, render_fps: float | None) -> float:
    """Frames per second that replay one recorded frame per agent step at the game's real speed."""
    if is_atari_game:
        return ATARI_FRAME_RATE / max(frame_skip, 1)
    return float(render_fps) if render_fps else float(DEFAULT_FPS)


def _even_sized(frame: np.ndarray) -> np.ndarray:
    # H.264 with yuv420p chroma subsampling needs even sides; pad by repeating the edge row/column
    # instead of letting imageio resize (which would change every frame's shape).
    pad_h, pad_w = frame.shape[0] % 2, frame.shape[1] % 2
    if pad_h or pad_w:
        frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frame


def _check_frame(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f"expected an RGB frame (H, W, 3) of uint8, got {frame.shape} {frame.dtype}")
    return frame


class MP4Writer:
    """Append RGB frames (H, W, 3) uint8 to an H.264 MP4, one at a time (no whole game in memory).

    Frames are stored at their own size (macro_block_size=1: imageio would otherwise scale a
    210×160 Atari screen up to 224×160); odd sides are padded by one edge pixel.
    Use as a context manager; `count` is the number of frames written.
    """

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.fps = fps
        self.count = 0
        self._writer = imageio.get_writer(
            str(self.path),
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,
            ffmpeg_log_level="error",
        )

    def append(self, frame: np.ndarray) -> None:
        self._writer.append_data(_even_sized(_check_frame(frame)))
        self.count += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "MP4Writer":
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def encode_gif(frames: np.ndarray, fps: float) -> bytes:
    """Frames (T, H, W, 3) uint8 → the bytes of an animated GIF that loops forever (Pillow)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"expected frames (T, H, W, 3) of uint8, T >= 1, got {frames.shape} {frames.dtype}")
    buffer = io.BytesIO()
    # GIF stores frame delays in hundredths of a second, so the rate is approximate (15 fps → 60 ms).
    imageio.v3.imwrite(buffer, frames, extension=".gif", duration=1000.0 / fps, loop=0)
    return buffer.getvalue()


def log_video(writer: SummaryWriter, tag: str, frames: np.ndarray, step: int, fps: float) -> None:
    """Log frames (T, H, W, 3) uint8 as an animated clip under `tag` (TensorBoard's Images tab).

    Writes the same record as SummaryWriter.add_video (an image summary holding a GIF) without
    going through it: torch's add_video imports `moviepy.editor`, which moviepy 2 removed, so with
    moviepy 2.x it prints a warning and logs nothing. The GIF is encoded with Pillow instead.
    """
    frames = np.asarray(frames)
    gif = encode_gif(frames, fps)
    _, height, width, channels = frames.shape
    image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=gif)
    # The writer's own file writer, as add_video uses it: the clip lands in the run's event file.
    writer._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)
