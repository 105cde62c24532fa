"""The measurements, each meant to run in its own process (bench.isolated.run_isolated).

Each takes a config as a plain dict (agents.config.config_to_dict), imports what it needs first
and starts its clocks after the imports. Times:
- wall_time_s: everything after the imports (envs and network built, training, clean-up);
- loop_time_s: the training loop only, from after the first env reset to after the last update.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path


def train_ours(config: dict, run_dir: str) -> dict:
    """Our trainer on `config`, logging into `run_dir`."""
    from agents.config import config_from_dict
    from agents.run.trainer import train

    started = time.time()
    train_config = config_from_dict({**config, "run_dir": run_dir})
    result = train(train_config, config_name="bench", progress=None)  # silent: the bench prints its own lines
    return {
        "start_time": started,
        "wall_time_s": time.time() - started,
        "loop_time_s": result.train_time,  # the training loop alone: set-up and SFT excluded
        "steps": result.global_step,
    }


def train_ours_ranks(config: dict, run_dir: str, nproc: int) -> dict:
    """Our trainer under torchrun with `nproc` ranks on this machine (agents/run/distributed.py).
    loop_time_s: from the training loop's start to its last update, read back from rank 0's last
    time/fps (env steps of every rank ÷ loop time)."""
    import subprocess

    started = time.time()
    run = Path(run_dir)
    command = [str(Path(sys.executable).parent / "torchrun"), "--standalone", f"--nproc_per_node={nproc}"]
    subprocess.run(
        [*command, *train_command(config, run)], check=True, stdout=subprocess.DEVNULL, env=one_thread_env()
    )
    steps, loop_time = last_fps(run)
    return {
        "start_time": started,
        "wall_time_s": time.time() - started,
        "loop_time_s": loop_time,
        "steps": steps,
        "nproc": nproc,
    }


def train_independent(config: dict, run_dir: str, nproc: int) -> dict:
    """`nproc` copies of our trainer at once, with nothing between them: copy k gets rank k's share
    of `config` (its envs, seeded as rank k's, stepped in its own process; its part of each
    minibatch; one torch thread: Distributed.local_config; GPU k where there are GPUs) and 1/nproc
    of the env steps, rounded up as the ranks' updates are. What data-parallel training could
    reach on this machine if the gradient exchange and the ranks' waiting for each other cost
    nothing. steps: every copy's; loop_time_s: from the first copy's loop start to the last one's
    end (each read back from its last time/fps and the time it was logged)."""
    import subprocess

    import torch

    from agents.config import config_from_dict, config_to_dict
    from agents.run.distributed import Distributed
    from bench.isolated import BenchError

    started = time.time()
    steps = -(-config["total_timesteps"] // nproc)
    gpus = torch.cuda.device_count() if config["device"] != "cpu" else 0
    copies = []
    try:
        for number in range(nproc):
            rank = Distributed(number, nproc, number)
            share = config_to_dict(rank.local_config(config_from_dict(config)))
            seed = rank.env_seed(config["seed"], share["env"]["num_envs"])
            # the run's own device setting: a rank's cuda:LOCAL_RANK is not a config value
            mine = {**share, "device": config["device"], "seed": seed, "total_timesteps": steps}
            env = one_thread_env()
            if gpus:
                env["CUDA_VISIBLE_DEVICES"] = str(number % gpus)
            run = Path(run_dir) / f"copy_{number}"
            command = [sys.executable, *train_command(mine, run)]
            copies.append((run, subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)))
        while True:  # until all have finished, or one has failed
            codes = [process.poll() for _, process in copies]
            failed = [(number, code) for number, code in enumerate(codes) if code not in (None, 0)]
            if failed:
                raise BenchError("copy {} of train.py failed with exit status {}".format(*failed[0]))
            if all(code == 0 for code in codes):
                break
            time.sleep(0.2)
    finally:  # a failed copy (or an exception here) ends the others
        for _, process in copies:
            if process.poll() is None:
                process.kill()
                process.wait()
    spans = [loop_span(run) for run, _ in copies]
    return {
        "start_time": started,
        "wall_time_s": time.time() - started,
        "loop_time_s": max(end for _, _, end in spans) - min(start for _, start, _ in spans),
        "steps": sum(copy_steps for copy_steps, _, _ in spans),
        "nproc": nproc,
    }


def train_command(config: dict, run: Path) -> list[str]:
    """train.py's arguments for `config` logging into `run` (the config written beside it)."""
    import yaml

    run.parent.mkdir(parents=True, exist_ok=True)
    config_file = run.parent / f"{run.name}.yaml"
    config_file.write_text(yaml.safe_dump({**config, "run_dir": str(run)}))
    train_py = Path(__file__).resolve().parent.parent / "train.py"
    return [str(train_py), "--config", str(config_file), "--no-progress"]


def one_thread_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def last_fps(run: Path) -> tuple[int, float]:
    """(env steps, training-loop seconds) from a run's last time/fps."""
    steps, start, end = loop_span(run)
    return steps, end - start


def loop_span(run: Path) -> tuple[int, float, float]:
    """(env steps, loop start, loop end) of a run, in wall-clock seconds: its last time/fps
    (env steps ÷ loop seconds) and the time that value was logged, after the last update."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run), size_guidance={"scalars": 0})
    events.Reload()
    last = events.Scalars("time/fps")[-1]
    return last.step, last.wall_time - last.step / last.value, last.wall_time


def one_core_costs(config: dict, steps: int, updates: int) -> dict:
    """What one update costs on one core, for the machine bound of data-parallel training: env
    stepping (the config's envs stepped in this process, random actions), the policy's forward
    passes at rollout time (batches of num_envs observations) and learning (ppo_update), each on
    one thread. Returns each as a rate: env steps/s, observations/s, samples × epochs/s."""
    import copy

    import numpy as np
    import torch

    from agents.config import config_from_dict
    from agents.networks.build import resolve_device
    from agents.run import setup
    from envs.vector import make_vector_env

    started = time.time()
    one_core = copy.deepcopy(config)
    one_core["torch_threads"] = 1
    one_core["env"] = {**config["env"], "vectorization": "sync"}
    env_rate = env_only(one_core, steps)["steps_per_s"]
    learner = learner_only(one_core, updates)
    train_config = config_from_dict(one_core)
    setup.seed_everything(train_config.seed)
    envs = make_vector_env(train_config)
    try:
        agent = setup.make_agent(train_config, envs, resolve_device(train_config.device))
        obs, _ = envs.reset(seed=train_config.seed)
    finally:
        envs.close()
    agent.eval()
    batch = torch.as_tensor(np.asarray(obs))
    calls = max(1, math.ceil(steps / train_config.env.num_envs))
    with torch.inference_mode():
        agent.act(batch)  # warm-up
        clock = time.perf_counter()
        for _ in range(calls):
            agent.act(batch)
        inference_time = time.perf_counter() - clock
    return {
        "start_time": started,
        "env_steps_per_s": env_rate,
        "inference_obs_per_s": calls * len(batch) / inference_time,
        "learner_samples_per_s": learner["samples_per_s"],
        "epochs_per_update": learner["epochs_per_update"],
    }


def train_sb3(config: dict, log_dir: str) -> dict:
    """SB3's PPO on `config` (mapped by bench.sb3_mapping), TensorBoard logs in `log_dir`."""
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.logger import configure

    from agents.config import config_from_dict
    from bench.sb3_mapping import make_sb3_env, make_sb3_model, probe_spaces, sb3_plan

    class LoopTimer(BaseCallback):
        started = float("nan")

        def _on_training_start(self) -> None:  # called after learn()'s env reset
            self.started = time.time()

        def _on_step(self) -> bool:
            return True

    started = time.time()
    train_config = config_from_dict(config)
    plan = sb3_plan(train_config, *probe_spaces(train_config))
    env = make_sb3_env(train_config, plan, train_config.seed)
    try:
        model = make_sb3_model(plan, env, train_config.seed)
        model.set_logger(configure(log_dir, ["tensorboard"]))
        timer = LoopTimer()
        model.learn(total_timesteps=train_config.total_timesteps, callback=timer)
        loop_time = time.time() - timer.started
        model.logger.close()
        steps = int(model.num_timesteps)
    finally:
        env.close()
    wall_time = time.time() - started
    return {"start_time": started, "wall_time_s": wall_time, "loop_time_s": loop_time, "steps": steps}


def env_only(config: dict, steps: int) -> dict:
    """The config's vector env stepping uniformly random actions: env steps per second."""
    from agents.config import config_from_dict
    from envs.vector import make_vector_env

    started = time.time()
    train_config = config_from_dict(config)
    envs = make_vector_env(train_config)
    try:
        envs.reset(seed=train_config.seed)
        envs.action_space.seed(train_config.seed)
        vector_steps = max(1, math.ceil(steps / train_config.env.num_envs))
        loop_start = time.perf_counter()
        for _ in range(vector_steps):
            envs.step(envs.action_space.sample())
        loop_time = time.perf_counter() - loop_start
    finally:
        envs.close()
    env_steps = vector_steps * train_config.env.num_envs
    return {
        "start_time": started,
        "steps": env_steps,
        "loop_time_s": loop_time,
        "steps_per_s": env_steps / loop_time,
    }


def learner_only(config: dict, updates: int) -> dict:
    """ppo_update alone, built by the trainer's own set-up (agents/run/setup.py: network, threads,
    precision, Adam, minibatch sampler), on a batch of the config's shape: one segment of the
    untrained policy, collected before the clock starts. Before each update the batch's
    log-probs and values are recomputed (untimed), so every update starts at ratio 1 as in
    training (this matters with target_kl). One warm-up update is untimed.
    Returns samples × epochs processed per second."""
    import torch

    from agents.config import config_from_dict
    from agents.core.update import ShuffledMinibatches, ppo_update
    from agents.networks.build import resolve_device
    from agents.networks.transformer import TransformerActorCritic
    from agents.run import setup
    from agents.run.collectors import SegmentCollector
    from envs.vector import make_vector_env

    started = time.time()
    train_config = config_from_dict(config)
    ppo = train_config.ppo
    setup.seed_everything(train_config.seed)
    device = resolve_device(train_config.device)
    envs = make_vector_env(train_config)
    try:
        agent = setup.make_agent(train_config, envs, device)
        collector = SegmentCollector(
            agent, envs, train_config, device, with_episodes=isinstance(agent, TransformerActorCritic)
        )
        collector.restart(train_config.seed)
        agent.eval()
        batch = collector.collect().batch
    finally:
        envs.close()
    optimizer = setup.make_optimizer(train_config, agent)
    minibatches = ShuffledMinibatches(torch.Generator().manual_seed(train_config.seed))
    penalty = ppo.kl_penalty_coef if ppo.loss == "kl_penalty" else None
    samples = epochs = 0.0
    loop_time = 0.0
    for update in range(updates + 1):
        agent.eval()
        with torch.no_grad():
            logp, _, values = agent.evaluate_actions(batch.obs, batch.actions)
        batch.logp, batch.values = logp.float(), values.float()
        agent.train()
        clock = time.perf_counter()
        metrics = ppo_update(agent, optimizer, batch, ppo, ppo.clip_coef, penalty, minibatches)
        if update > 0:  # update 0 warms up (allocations, kernel selection)
            loop_time += time.perf_counter() - clock
            samples += len(batch) * metrics["epochs_run"]
            epochs += metrics["epochs_run"]
    return {
        "start_time": started,
        "loop_time_s": loop_time,
        "samples_per_s": samples / loop_time,
        "epochs_per_update": epochs / updates,
    }
