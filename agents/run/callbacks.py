"""Callbacks: what happens after an update besides learning. The loop calls each one's `on_update`
after the update's scalars are logged and its TrainState captured; none of them changes what the
agent learns (a video plays in an env of its own, under a forked RNG).

To add one, write a class with `on_update(self, trainer) -> None` and append it in
agents/run/setup.py `make_callbacks`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from agents.run.evaluation import record_video_clip
from agents.run.run_dir import VIDEO_DIR
from agents.run.video import log_video

if TYPE_CHECKING:
    from agents.run.trainer import Trainer


class Callback(Protocol):
    def on_update(self, trainer: Trainer) -> None: ...


class CheckpointEvery:
    """A checkpoint update_<N>.pt every `interval` updates (older ones pruned to keep_checkpoints)."""

    def __init__(self, interval: int) -> None:
        self.interval = interval

    def on_update(self, trainer: Trainer) -> None:
        if trainer.state.update % self.interval == 0:
            trainer.save_checkpoint()


class VideoEvery:
    """One evaluation game every `interval` updates, in its own env (training envs untouched), saved
    as videos/step_<env steps>.mp4 and shown in TensorBoard; its wall time is left out of time/fps."""

    def __init__(self, interval: int) -> None:
        self.interval = interval

    def on_update(self, trainer: Trainer) -> None:
        state = trainer.state
        if state.update % self.interval:
            return
        started = time.time()
        path = trainer.run_dir / VIDEO_DIR / f"step_{state.global_step}.mp4"
        frames, fps = record_video_clip(
            trainer.agent, trainer.config, seed=trainer.config.seed + state.update, path=path,
            normalization=trainer.normalization(),
        )
        log_video(trainer.logger.writer, "eval/video", frames, state.global_step, fps)
        trainer.logger.start_time += time.time() - started


class TextSamplesEvery:
    """The latest completions of a token env in TensorBoard's text tab, at updates 1, 1 + N, 1 + 2N..."""

    def __init__(self, interval: int) -> None:
        self.interval = interval

    def on_update(self, trainer: Trainer) -> None:
        state = trainer.state
        if self.interval == 1 or state.update % self.interval == 1:
            trainer.logger.writer.add_text("samples", "\n\n".join(state.texts), state.global_step)
