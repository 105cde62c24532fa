"""Callbacks: what happens after an update besides learning. The loop calls each one's `on_update`
after the update's scalars are logged and its TrainState captured; none of them changes what the
agent learns (a video plays in an env of its own, under a forked RNG).

To add one, write a class with `on_update(self, trainer) -> None` and append it in
agents/run/setup.py `make_callbacks`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Callable, Protocol

import numpy as np

from agents.run.checkpoint import load_checkpoint, save_checkpoint
from agents.run.evaluation import play_episodes, record_video_clip
from agents.run.run_dir import CHECKPOINT_DIR, VIDEO_DIR
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
    """One evaluation game every `interval` updates and after the last one (the trained agent), in
    its own env (training envs untouched), saved as videos/step_<env steps>.mp4 and shown in
    TensorBoard; its wall time is left out of time/fps."""

    def __init__(self, interval: int) -> None:
        self.interval = interval

    def on_update(self, trainer: Trainer) -> None:
        state = trainer.state
        if state.update % self.interval and state.global_step < trainer.config.total_timesteps:
            return
        started = time.time()
        path = trainer.run_dir / VIDEO_DIR / f"step_{state.global_step}.mp4"
        frames, fps = record_video_clip(
            trainer.agent, trainer.config, seed=trainer.config.seed + state.update, path=path,
            normalization=trainer.normalization(),
        )
        log_video(trainer.logger.writer, "eval/video", frames, state.global_step, fps)
        trainer.logger.start_time += time.time() - started


BEST_CHECKPOINT = "best.pt"
EVAL_SEED_OFFSET = 1_000_003  # evaluation games are seeded apart from the training envs' seeds


class EvaluateEvery:
    """Every `interval` updates, `episodes` whole games in an evaluation env of its own (Atari: all
    lives, raw score; agents/run/evaluation.py), as SB3's EvalCallback: eval/mean_reward and
    eval/mean_ep_length logged, and checkpoints/best.pt written when the mean beats every earlier
    evaluation of the run (a resumed run reads the best so far back from best.pt). The same games
    (seeds) every time, so that evaluations compare; their wall time is left out of time/fps."""

    def __init__(self, interval: int, episodes: int, deterministic: bool) -> None:
        self.interval, self.episodes, self.deterministic = interval, episodes, deterministic
        self.best: float | None = None
        self.best_read = False

    def _read_best(self, trainer: Trainer) -> None:
        path = trainer.run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT
        if path.is_file():
            self.best = float(load_checkpoint(path).get("eval", {}).get("mean_reward", -np.inf))
        self.best_read = True

    def on_update(self, trainer: Trainer) -> None:
        state = trainer.state
        if state.update % self.interval:
            return
        if not self.best_read:
            self._read_best(trainer)
        started = time.time()
        results = play_episodes(
            trainer.agent, trainer.config, self.episodes, trainer.config.seed + EVAL_SEED_OFFSET,
            self.deterministic, normalization=trainer.normalization(),
        )
        mean_reward = float(np.mean([r["return"] for r in results]))
        mean_length = float(np.mean([r["length"] for r in results]))
        writer = trainer.logger.writer
        writer.add_scalar("eval/mean_reward", mean_reward, state.global_step)
        writer.add_scalar("eval/mean_ep_length", mean_length, state.global_step)
        writer.flush()
        trainer.last_scalars.update({"eval/mean_reward": mean_reward, "eval/mean_ep_length": mean_length})
        if self.best is None or mean_reward > self.best:
            self.best = mean_reward
            eval_record = {"mean_reward": mean_reward, "mean_ep_length": mean_length, "update": state.update}
            # Not through trainer.save_checkpoint: best.pt is no resume point, and writing it must
            # not count as having saved this update.
            path = trainer.run_dir / CHECKPOINT_DIR / BEST_CHECKPOINT
            save_checkpoint(path, {**trainer.learner.checkpoint(state), "eval": eval_record})
        trainer.logger.start_time += time.time() - started


class FunctionCallback:
    """A plain function as a callback (the Python API's `learn(callback=fn)`): fn(metrics) after
    every update, metrics being what the update logged plus global_step and update; a return of
    False ends training there, as in Stable-Baselines3."""

    def __init__(self, function: Callable[[dict], bool | None]) -> None:
        self.function = function

    def on_update(self, trainer: Trainer) -> None:
        state = trainer.state
        metrics = {"global_step": state.global_step, "update": state.update, **trainer.last_scalars}
        if self.function(metrics) is False:
            trainer.finish_early()


class StopAtReturn:
    """End training after the first update whose rollout/ep_rew_mean (mean return of the last
    stats_window episodes) is at least `threshold`, as SB3's StopTrainingOnRewardThreshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def on_update(self, trainer: Trainer) -> None:
        mean_return = trainer.last_scalars.get("rollout/ep_rew_mean")
        if mean_return is not None and mean_return >= self.threshold:
            trainer.finish_early()


class TextSamplesEvery:
    """The latest completions of a token env in TensorBoard's text tab, at updates 1, 1 + N, 1 + 2N..."""

    def __init__(self, interval: int) -> None:
        self.interval = interval

    def on_update(self, trainer: Trainer) -> None:
        state = trainer.state
        if self.interval == 1 or state.update % self.interval == 1:
            trainer.logger.writer.add_text("samples", "\n\n".join(state.texts), state.global_step)
