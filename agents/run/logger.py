"""Training logs: TensorBoard scalars under Stable-Baselines3's tag names, and a progress bar."""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
from tensorboard.compat.proto.summary_pb2 import Summary
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from agents.config import flatten_dict


def markdown_table(rows: dict[str, object]) -> str:
    lines = ["| parameter | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows.items()]
    return "\n".join(lines)


def train_scalars(metrics: dict[str, float], lr: float, clip_coef: float, ptx=None) -> dict[str, float]:
    """The train/* scalars of one update, under Stable-Baselines3's tags and definitions (see
    bench/README.md for what each means in either library); `ptx`: the PPO-ptx term, if any."""
    scalars = {
        "train/learning_rate": lr,
        "train/clip_range": clip_coef,
        "train/loss": metrics["loss"],
        "train/policy_gradient_loss": metrics["policy_loss"],
        "train/value_loss": metrics["value_loss"],
        "train/entropy_loss": -metrics["entropy"],  # SB3 logs the negated entropy
        "train/approx_kl": metrics["approx_kl_last_epoch"],  # SB3's definition
        "train/clip_fraction": metrics["clip_fraction"],
        "train/explained_variance": metrics["explained_variance"],
        "train/epochs_run": metrics["epochs_run"],
    }
    if ptx is not None:
        scalars["train/ptx_loss"] = metrics["extra_loss"]
        scalars["train/ptx_log_likelihood"] = ptx.last_log_likelihood
    return scalars


def wait_for_a_later_second(log_dir: Path) -> None:
    """Return once the clock has passed the creation second of every event file in `log_dir`.

    TensorBoard reads a run's event files in name order: creation second, host, pid, then a
    per-process counter without zero padding ("10" sorts before "9"). A writer opened in the same
    second as an earlier one of the same process (a run resumed within a second, as tests do)
    could sort before it, and its purge of the discarded future would apply to the wrong file."""
    stamps = [path.name.split(".")[3] for path in log_dir.glob("events.out.tfevents.*.*")]
    newest = max((int(stamp) for stamp in stamps if stamp.isdigit()), default=None)
    # A stamp further ahead than the current second (a file from a host whose clock runs ahead)
    # cannot be waited out sensibly: its order is the other host's business.
    if newest is not None and newest + 1 - time.time() <= 1:
        while time.time() < newest + 1:
            time.sleep(0.02)


class NullWriter:
    """SummaryWriter's interface, writing nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


class TrainingLogger:
    """Keeps the last `window` episodes, writes scalars against env steps, drives the progress bar.

    Tags match Stable-Baselines3 (rollout/ep_rew_mean, train/approx_kl, time/fps, ...) so that runs
    of both libraries overlay in one TensorBoard.
    """

    def __init__(
        self,
        log_dir: Path | None,
        total_timesteps: int,
        window: int,
        progress: bool | None,
        start_step: int = 0,
        purge_step: int | None = None,
        log_interval: int = 10,
    ) -> None:
        """progress: True, a bar on a terminal (stderr), else a line every `log_interval` updates;
        False, the lines (for nohup and CI logs); None, silent (the Python API's default)."""
        # purge_step (resumed runs): TensorBoard hides the points at steps >= purge_step written
        # earlier, by the process that crashed after its last checkpoint, so the curve has neither
        # duplicates nor points of a discarded future.
        # log_dir None: a rank other than 0 under torchrun, which writes nothing.
        if log_dir:
            wait_for_a_later_second(Path(log_dir))
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step) if log_dir else NullWriter()
        self.returns: deque[float] = deque(maxlen=window)
        self.lengths: deque[int] = deque(maxlen=window)
        self.episodes = 0
        self.start_time = time.time()
        self.start_step = start_step  # time/fps counts the steps of this process only
        self.total_timesteps = total_timesteps
        self.silent = progress is None
        bar = progress is True and sys.stderr.isatty()
        self.log_interval = log_interval if progress is not None and not bar else 0
        self.updates = 0
        # tqdm's own rate (steps/s) is the one rate shown; the postfix adds the mean return.
        self.bar = tqdm(
            total=total_timesteps, initial=start_step, unit="step", disable=not bar, dynamic_ncols=True
        )
        self.closed = False

    def state_dict(self) -> dict:
        """The episode window behind rollout/ep_rew_mean, for checkpoints (plain lists and ints)."""
        return {"returns": list(self.returns), "lengths": list(self.lengths), "episodes": self.episodes}

    def load_state_dict(self, state: dict) -> None:
        self.returns.clear()
        self.lengths.clear()
        self.returns.extend(float(r) for r in state["returns"])
        self.lengths.extend(int(n) for n in state["lengths"])
        self.episodes = int(state["episodes"])

    def log_hyperparameters(self, config: dict) -> None:
        self.writer.add_text("hyperparameters", markdown_table(flatten_dict(config)), 0)

    def add_episodes(self, episodes: list[tuple[float, int]]) -> None:
        for episode_return, length in episodes:
            self.returns.append(episode_return)
            self.lengths.append(length)
            self.episodes += 1

    @property
    def mean_return(self) -> float:
        return float(np.mean(self.returns)) if self.returns else float("nan")

    def log_update(self, global_step: int, metrics: dict[str, float]) -> dict[str, float]:
        """Write the rollout and train scalars of one update at x = global env steps; return them
        (with time/fps and the episode means), as callbacks see them."""
        elapsed = max(time.time() - self.start_time, 1e-9)
        fps = (global_step - self.start_step) / elapsed
        scalars = {"time/fps": fps, **metrics}
        if self.returns:
            scalars["rollout/ep_rew_mean"] = self.mean_return
            scalars["rollout/ep_len_mean"] = float(np.mean(self.lengths))
        self._write_scalars(scalars, global_step)
        # On disk after every update (a few hundred bytes): a killed run then loses no point up to
        # its last checkpoint, and a resumed curve joins the old one without a gap.
        self.writer.flush()
        self.bar.update(global_step - self.bar.n)
        self.bar.set_postfix(ep_rew_mean=f"{self.mean_return:.2f}", refresh=False)
        self.updates += 1
        last = global_step >= self.total_timesteps
        if self.log_interval and (self.updates % self.log_interval == 0 or last):
            print(self.progress_line(global_step, fps), flush=True)
        return scalars

    def _write_scalars(self, scalars: dict[str, float], step: int) -> None:
        """The scalars as one event, a Summary with a value per tag; TensorBoard reads each value
        as a point of its own series, as if add_scalar had written it. One event costs what one
        add_scalar call does (70 µs): with one per tag, logging was 3 % of CartPole's training."""
        if isinstance(self.writer, NullWriter):
            return
        values = [Summary.Value(tag=tag, simple_value=float(value)) for tag, value in scalars.items()]
        self.writer.file_writer.add_summary(Summary(value=values), step)

    def say(self, message: str) -> None:
        """A line about the run's phase (e.g. SFT before RL), unless the run is silent."""
        if self.silent:
            return
        if self.bar.disable:
            print(message, flush=True)
        else:
            tqdm.write(message, file=sys.stderr)  # above the bar, which stays whole

    def progress_line(self, global_step: int, fps: float) -> str:
        """`step 12288/100000 (12%) | 1234 steps/s | mean return 23.40 | 1m11s left`"""
        left = max(self.total_timesteps - global_step, 0) / max(fps, 1e-9)
        minutes, seconds = divmod(int(left), 60)
        hours, minutes = divmod(minutes, 60)
        eta = f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
        percent = min(100.0, 100 * global_step / self.total_timesteps)
        return (
            f"step {global_step}/{self.total_timesteps} ({percent:.0f}%) | {fps:.0f} steps/s | "
            f"mean return {self.mean_return:.2f} | {eta} left"
        )

    def __enter__(self) -> "TrainingLogger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.bar.close()
        self.writer.flush()
        self.writer.close()
