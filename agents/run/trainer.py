"""The on-policy training loop: schedule → collect → PPO update → log → callbacks.

One loop for every kind of game. The collector decides how a batch is played (agents/run/collectors.py:
PPO's GAE segments or GRPO's prompt groups); the Learner (agents/run/learner.py) holds what an
update changes; callbacks (agents/run/callbacks.py) do what happens between updates besides
learning; agents/run/setup.py builds the pieces.

Reliability (agents/run/resume.py, agents/run/faults.py): a checkpoint holds the networks, the
optimizer and a TrainState (agents/run/state.py), everything the loop needs to go on; a run
resumes from its newest good one. SIGINT/SIGTERM stop at the next safe point with a checkpoint; a
non-finite gradient, loss or weight stops the run before it is saved; an env that raises or dies
stops it after a checkpoint of the last completed update.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from agents.config import TrainConfig, config_to_dict
from agents.core.schedules import annealed
from agents.networks.actor_critic import ActorCritic
from agents.networks.build import resolve_device
from agents.run import distributed, setup
from agents.run.callbacks import Callback
from agents.run.checkpoint import FINAL_CHECKPOINT, prune_checkpoints, save_checkpoint, update_checkpoint_name
from agents.run.collectors import EpisodeRecorder
from agents.run.faults import (
    EnvFailure,
    NonFiniteError,
    StopRequested,
    StopSignals,
    TrainingFailed,
    TrainingInterrupted,
    close_envs,
    signal_name,
    stop_signals_ignored,
)
from agents.run.hints import command
from agents.run.learner import Learner
from agents.run.logger import TrainingLogger, train_scalars
from agents.run.resume import ResumePoint, env_reset_seed, report_skipped_checkpoints
from agents.run.run_dir import CHECKPOINT_DIR, check_new_run_dir, prepare_run_dir, write_config
from agents.run.state import TrainState


@dataclass
class TrainResult:
    run_dir: Path
    global_step: int
    mean_return: float  # mean over the last `stats_window` episodes
    episodes: int
    wall_time: float  # seconds from building the agent to the final checkpoint (SFT included)
    agent: ActorCritic  # the trained network, as saved in the final checkpoint
    train_time: float  # seconds of the training loop alone (what time/fps divides by)


def train(
    config: TrainConfig,
    config_name: str = "config",
    progress: bool | None = True,
    resume: ResumePoint | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train `config`, or with `resume` continue that run from its checkpoint; writes config.yaml,
    TensorBoard events and checkpoints in run_dir. `callbacks` run after the built-in ones, at
    every update (agents/run/callbacks.py); one may end training early with `trainer.finish_early()`.

    Raises ConfigError or CheckpointError on bad input (before anything is written),
    TrainingInterrupted after SIGINT/SIGTERM and TrainingFailed when the run cannot go on.
    """
    dist = distributed.from_environment(config)  # None: one process (not launched by torchrun)
    try:
        result = _train(config, config_name, progress, resume, callbacks, dist)
        if dist is not None:
            # The ranks tear their process group down together, once rank 0 has written final.pt.
            # Seen once under load without this: rank 1, done first, aborted in teardown (SIGABRT,
            # "terminate called without an active exception") while rank 0 was still saving.
            dist.wait_for_all()
        return result
    except TrainingFailed as exc:
        raise TrainingFailed(f"rank {dist.rank}: {exc}") if dist else exc from None
    except RuntimeError as exc:  # under torchrun: a collective that failed or timed out
        if dist is None:
            raise
        raise TrainingFailed(f"rank {dist.rank}: lost the other ranks ({first_line(exc)})") from None
    finally:
        if dist is not None:
            dist.close()


def _train(
    config: TrainConfig,
    config_name: str,
    progress: bool | None,
    resume: ResumePoint | None,
    callbacks: Sequence[Callback],
    dist: distributed.Distributed | None,
) -> TrainResult:
    # Under torchrun, `local` is this rank's share (its envs, one thread); `config` stays the
    # run's, as saved in config.yaml and checkpoints.
    local = dist.local_config(config) if dist else config
    main = dist is None or dist.is_main
    if resume is None and main:
        check_new_run_dir(config)
    setup.seed_everything(config.seed)
    device = resolve_device(local.device)
    with StopSignals() as stop:
        with stop_signals_ignored():  # the trainer stops its env workers itself, after its checkpoint
            envs = setup.make_training_envs(local)
        trainer = None
        try:
            started = time.time()
            # Everything that can fail on bad input happens before anything is written to disk.
            learner = Learner(local, envs, device, saved_config=config)
            state = learner.restore(resume) if resume else None
            if dist is not None:
                dist.broadcast_parameters(learner.agent)
                dist.seed_rank_streams(env_reset_seed(config.seed, state.update if state else 0),
                                       learner.minibatch_rng)
                learner.sync = dist
            run_dir = None  # written by rank 0 alone under torchrun, and shared with the others
            if main:
                run_dir = Path(config.run_dir) if resume else prepare_run_dir(config, config_name)
                if resume and resume.extended:
                    write_config(run_dir, config)  # the run's new length or device, for later resumes
            if dist is not None:
                run_dir = Path(dist.share(str(run_dir) if main else None))
                config.run_dir = str(run_dir)
            start = state or TrainState()
            # A resumed curve continues from the checkpoint's point, which the crashed process logged.
            logger = TrainingLogger(
                run_dir if main else None, config.total_timesteps, config.stats_window,
                progress if main else None, start_step=start.global_step,
                purge_step=start.global_step + 1 if resume else None, log_interval=config.log_interval,
            )
            with logger:
                if resume:
                    if main:
                        report_skipped_checkpoints(resume)
                    logger.load_state_dict(start.episodes)
                else:
                    logger.log_hyperparameters(config_to_dict(config))
                    phase_started = time.time()
                    if config.rlhf.sft_steps:
                        logger.say(f"SFT: {config.rlhf.sft_steps} supervised steps before RL")
                    learner.warm_start(logger.writer)
                    if config.rlhf.sft_steps:
                        logger.say(f"SFT: done in {time.time() - phase_started:.0f}s; RL starts")
                trainer = Trainer(
                    config, learner, envs, stop, run_dir, logger, state, resume, callbacks, local, dist
                )
                trainer.run()
                if dist is not None:
                    dist.barrier()  # no rank leaves before rank 0's final.pt is on disk
            return TrainResult(
                run_dir,
                trainer.state.global_step,
                logger.mean_return,
                logger.episodes,
                time.time() - started,
                learner.agent,
                train_time=time.time() - logger.start_time,
            )
        finally:
            close_envs(envs, failed=trainer is not None and trainer.env_failed)


def first_line(exc: Exception) -> str:
    """An exception in one line for an `error:` message (gloo's span several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Trainer:
    """One run's loop over a Learner: its envs and collector, logger, callbacks and checkpoints."""

    def __init__(
        self,
        config: TrainConfig,
        learner: Learner,
        envs: setup.Envs,
        stop: StopSignals,
        run_dir: Path,
        logger: TrainingLogger,
        state: TrainState | None,
        resumed_from: ResumePoint | None,
        extra_callbacks: Sequence[Callback] = (),
        local_config: TrainConfig | None = None,
        dist: distributed.Distributed | None = None,
    ) -> None:
        self.config, self.learner, self.agent, self.stop = config, learner, learner.agent, stop
        self.run_dir, self.logger, self.dist = run_dir, logger, dist
        self.local_config = local_config or config  # this rank's share under torchrun
        # Under torchrun a stop is agreed on at update boundaries (every rank stops after the same
        # update), and episodes are gathered from every rank before they are logged.
        self.recorder = EpisodeRecorder(logger, stop, gathered=dist is not None)
        self.recorder.texts.extend(state.texts if state else [])
        self.collector = setup.make_collector(
            self.local_config, self.agent, setup.guard_envs(envs, config.env_id), learner.device,
            self.recorder, learner.reference, learner.prompt_rng, learner.mask_size,
        )
        main = dist is None or dist.is_main
        self.callbacks = [*setup.make_callbacks(config, self.agent), *extra_callbacks] if main else []
        self.last_scalars: dict[str, float] = {}  # what the last update logged
        self.finishing_early = False  # set by a callback: save final.pt now and stop
        self.normalizer = setup.normalizer_of(envs)
        if self.normalizer is not None and state is not None and state.normalization is not None:
            self.normalizer.load_state_dict(state.normalization)
        # The state after the last completed update (None before the first): what a checkpoint
        # written between two updates holds.
        self.state = state
        self.saved_update = resumed_from.update if resumed_from else -1  # of the newest checkpoint on disk
        self.last_checkpoint = resumed_from.checkpoint if resumed_from else None
        self.env_failed = False

    def run(self) -> None:
        """Train to total_timesteps, then save final.pt; on a stop or a failure, save what is safe
        to save and raise TrainingInterrupted or TrainingFailed."""
        start = self.state or TrainState()
        # A resumed run cannot restore the episodes in progress: they restart, from a seed that
        # depends on (seed, update) only (agents/run/resume.py).
        seed = env_reset_seed(self.config.seed, start.update)
        if self.dist is not None:
            seed = self.dist.env_seed(seed, self.local_config.env.num_envs)
        self.collector.restart(seed)
        self.logger.start_time = time.time()  # steps/s counts training, not set-up or SFT
        try:
            self._loop(start.update, start.global_step)
            self.save_checkpoint(FINAL_CHECKPOINT)
        except StopRequested:
            saved = self._save_before_stopping()
            raise TrainingInterrupted(
                self.stop.signum, f"interrupted by {signal_name(self.stop.signum)}: {saved}"
            ) from None
        except EnvFailure as exc:
            self.env_failed = True
            raise TrainingFailed(f"{exc}; {self._save_before_stopping()}") from None
        except RuntimeError as exc:  # under torchrun: a collective failed (a rank died) or timed out
            if self.dist is None:
                raise
            raise TrainingFailed(
                f"lost the other ranks ({first_line(exc)}); {self._save_before_stopping()}"
            ) from None
        except NonFiniteError as exc:
            # The weights may already hold the NaN: nothing of this update is saved.
            update = self.state.update + 1 if self.state else start.update + 1
            last = self.last_checkpoint or "none"
            raise TrainingFailed(
                f"non-finite {exc.what} at update {update}; last good checkpoint: {last}"
            ) from None

    def _loop(self, update: int, global_step: int) -> None:
        config, learner = self.config, self.learner
        world = self.dist.world_size if self.dist else 1
        while global_step < config.total_timesteps:
            stop, finish = self.stop.requested, self.finishing_early
            if self.dist is not None:  # every rank leaves the loop at the same update
                stop, finish = self.dist.any(stop, finish)
            if finish:
                break
            if stop:
                if not self.stop.requested:
                    self.stop.signum = signal.SIGTERM  # another rank was signalled: stop as it does
                raise StopRequested
            update += 1
            lr, clip_coef = annealed(config.ppo, global_step, config.total_timesteps)

            self.agent.eval()
            rollout = self.collector.collect()
            global_step += len(rollout.batch) * world
            if self.dist is not None:
                episodes = self.dist.gather(self.recorder.take_gathered())
                self.logger.add_episodes(episodes)
                rollout.completions = len(episodes)

            metrics = learner.update(rollout.batch, lr, clip_coef)
            scalars = {**train_scalars(metrics, lr, clip_coef, learner.ptx), **rollout.scalars}
            scalars.update(learner.adapt_coefficients(metrics, rollout, self.logger.lengths))
            self.last_scalars = self.logger.log_update(global_step, scalars)

            self.state = learner.capture(
                update, global_step, self.logger.state_dict(), list(self.recorder.texts), self.normalization()
            )
            for callback in self.callbacks:
                callback.on_update(self)

    def finish_early(self) -> None:
        """End training after this update as if it were the last: final.pt is written, the run
        can be extended later (--resume RUN, or learn() again)."""
        self.finishing_early = True

    def normalization(self) -> dict | None:
        """The observation / return statistics now (None without normalisation)."""
        return self.normalizer.state_dict() if self.normalizer is not None else None

    def save_checkpoint(self, name: str | None = None) -> Path:
        """Save the state after the last completed update as checkpoints/`name` (default
        update_<N>.pt, older ones pruned to keep_checkpoints)."""
        name = name or update_checkpoint_name(self.state.update)
        path = self.run_dir / CHECKPOINT_DIR / name
        if self.dist is None or self.dist.is_main:  # under torchrun, rank 0 writes for all
            save_checkpoint(path, self.learner.checkpoint(self.state))
        self.saved_update, self.last_checkpoint = self.state.update, path
        if name != FINAL_CHECKPOINT:
            prune_checkpoints(self.run_dir / CHECKPOINT_DIR, self.config.keep_checkpoints)
        return path

    def _save_before_stopping(self) -> str:
        """Checkpoint the last completed update unless it is on disk already; say where it is and
        how to go on."""
        if self.state is None:
            return "no update had finished: nothing saved"
        if self.dist is not None and not self.dist.is_main:
            return "rank 0 writes the run's checkpoints"
        if self.saved_update != self.state.update:
            self.save_checkpoint()
        resume = command("train.py", "--resume", str(self.run_dir))
        return (
            f"checkpoint {self.last_checkpoint} (update {self.state.update}, "
            f"global step {self.state.global_step}); continue with: {resume}"
        )
