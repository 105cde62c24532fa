"""Data-parallel PPO on torch.distributed, launched by torchrun (one process per rank):

    torchrun --standalone --nproc_per_node=2 train.py --config configs/breakout.yaml

The same algorithm with the same total hyperparameters as one process (CleanRL's
ppo_atari_multigpu; DD-PPO, Wijmans et al. 2019): `env.num_envs` and the minibatch size are totals,
split evenly across ranks; each rank steps its own envs (rank r's envs are seeded where one process
would seed envs r·n … r·n + n − 1, so together they play one process's games) and starts from rank
0's weights; at every optimizer step the gradients are averaged over the ranks (one flat
all-reduce) and advantages are normalised with the whole minibatch's mean and std, so N ranks on
one process's data take one process's step. Rank 0 alone writes config.yaml, TensorBoard,
checkpoints and videos; episode statistics are gathered from every rank. A stop signal is agreed
on at update boundaries, so every rank stops after the same update. Backend: gloo on CPU, nccl on
CUDA (cuda:LOCAL_RANK); collectives time out after `dist_timeout` seconds, so a rank that dies
cannot hang the others.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from agents.config import ConfigError, TrainConfig
from envs.registry import is_token_env

# Rank r > 0 draws its actions and minibatches from seed + r · RANK_SEED_STRIDE: independent
# streams, while rank 0 keeps one process's (a 1-rank run is the single-process run).
RANK_SEED_STRIDE = 1_000_003


def launched_by_torchrun() -> bool:
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


@dataclass
class Distributed:
    """This process's place in a data-parallel run, and the collectives training needs."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ set-up
    def local_config(self, config: TrainConfig) -> TrainConfig:
        """This rank's share of `config`: num_envs / world size envs (the minibatch count stays,
        so each minibatch is split alike), stepped in the rank's own process unless
        env.vectorization or env.num_workers says otherwise; one torch thread unless torch_threads
        says otherwise (each rank keeps one core busy: the CleanRL multigpu finding)."""
        local = copy.deepcopy(config)
        local.env.num_envs = config.env.num_envs // self.world_size
        local.torch_threads = config.torch_threads or 1
        if config.env.vectorization == "auto" and not config.env.num_workers:
            # The rank is the unit of parallelism: it steps its own envs in its own process, with no
            # frames crossing process boundaries (env worker processes would fight it for the core).
            local.env.vectorization = "sync"
        if config.device in ("cuda", "auto") and torch.cuda.is_available():
            local.device = f"cuda:{self.local_rank}"
        return local

    def env_seed(self, seed: int, local_num_envs: int) -> int:
        """The reset seed of this rank's vector env: one process's env r·n gets seed + r·n."""
        return seed + self.rank * local_num_envs

    def seed_rank_streams(self, seed: int, *generators: torch.Generator) -> None:
        """Rank r > 0: its own streams for sampling actions and shuffling minibatches."""
        if self.rank == 0:
            return
        torch.manual_seed(seed + RANK_SEED_STRIDE * self.rank)
        for offset, generator in enumerate(generators, start=1):
            generator.manual_seed(seed + RANK_SEED_STRIDE * self.rank + offset)

    def broadcast_parameters(self, module: torch.nn.Module) -> None:
        """Every rank starts from rank 0's weights."""
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)

    # ---------------------------------------------------------- agreement
    def any(self, *flags: bool) -> tuple[bool, ...]:
        """For each flag, whether any rank raised it (stop requests, a callback's early finish:
        seen at an update boundary by all, so that every rank leaves the loop together)."""
        values = torch.tensor([1.0 if flag else 0.0 for flag in flags])
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
        return tuple(bool(v > 0) for v in values.tolist())

    def share(self, value: Any) -> Any:
        """Rank 0's `value` (e.g. the run dir it chose), on every rank."""
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, items: list[Any]) -> list[Any]:
        """Every rank's `items`, concatenated in rank order, on every rank."""
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, items)
        return [item for part in gathered for item in part]

    def barrier(self) -> None:
        dist.barrier()

    # ------------------------------------------------- GradientSync (agents/core/update.py)
    def normalize_advantages(self, minibatches: list[torch.Tensor]) -> list[torch.Tensor]:
        """(Â − μ) / (σ + 1e-8) for each minibatch, with μ, σ (Bessel-corrected) of that minibatch
        over all ranks, from the all-reduced Σ Â, Σ Â² and count of every minibatch at once. A
        minibatch of one sample over all ranks is left as it is, as in one process."""
        moments = torch.tensor(
            [[float(part.double().sum()), float(part.double().square().sum()), float(part.numel())]
             for part in minibatches],
            dtype=torch.float64,
        )
        dist.all_reduce(moments)
        normalized = []
        for part, (total, squares, count) in zip(minibatches, moments.tolist()):
            if count <= 1:
                normalized.append(part)
                continue
            mean = total / count
            variance = max(squares - count * mean * mean, 0.0) / (count - 1.0)
            normalized.append((part - mean) / (float(np.sqrt(variance)) + 1e-8))
        return normalized

    def average_gradients(self, parameters: list[torch.Tensor]) -> None:
        """One flat all-reduce of every gradient, divided by the world size."""
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        keys = sorted(values)
        vector = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(vector)
        return {k: float(v) / self.world_size for k, v in zip(keys, vector.tolist())}

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def check_split(config: TrainConfig, world_size: int) -> None:
    """Refuse a config whose envs or minibatches do not split evenly across `world_size` ranks."""
    if config.algo == "grpo" or is_token_env(config.env_id) or config.network.kind == "transformer":
        # Whole-episode minibatches differ in size between ranks, and the RLHF β adapts to each
        # rank's own KL: the ranks would not take one process's step.
        raise ConfigError("token envs (GRPO, the transformer) are not supported under torchrun yet; "
                          "train them in one process")
    if config.env.num_envs % world_size:
        raise ConfigError(
            f"env.num_envs={config.env.num_envs} does not split across {world_size} ranks "
            f"(a multiple of {world_size} is needed: each rank steps num_envs / ranks envs)"
        )
    minibatch = config.batch_size // config.ppo.num_minibatches
    if config.batch_size % config.ppo.num_minibatches or minibatch % world_size:
        raise ConfigError(
            f"a minibatch of {config.batch_size}/{config.ppo.num_minibatches} samples does not split "
            f"across {world_size} ranks (env.num_envs × ppo.num_steps / ppo.num_minibatches must be a "
            f"multiple of {world_size})"
        )


def from_environment(config: TrainConfig) -> Distributed | None:
    """The data-parallel context when torchrun started this process (None otherwise): the process
    group is joined (gloo on CPU, nccl on CUDA) after every check that bad input can fail."""
    if not launched_by_torchrun():
        return None
    world_size, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    check_split(config, world_size)
    cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    if cuda:
        if not torch.cuda.is_available():
            raise ConfigError("device: cuda was requested but torch sees no CUDA device")
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {local_rank} needs cuda:{local_rank}, but this machine has "
                f"{torch.cuda.device_count()} GPU(s): start at most that many processes per node"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # With CUDA, gradients go through nccl and the small CPU agreements (stop flags, episode
        # lists, metrics) through gloo.
        dist.init_process_group(
            "cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=timedelta(seconds=config.dist_timeout),
        )
    return Distributed(rank, world_size, local_rank)
