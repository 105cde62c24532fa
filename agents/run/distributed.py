"""Data-parallel PPO on torch.distributed, launched by torchrun (one process per rank):

    torchrun --standalone --nproc_per_node=2 train.py --config configs/breakout.yaml

The same algorithm with the same total hyperparameters as one process (CleanRL's
ppo_atari_multigpu; DD-PPO, Wijmans et al. 2019): `env.num_envs` and the minibatch size are totals,
split evenly across ranks; each rank steps its own envs (rank r's envs are seeded where one process
would seed envs r·n … r·n + n − 1, so together they play one process's games) and starts from rank
0's weights; at every optimizer step the gradients are averaged over the ranks (summed in buckets,
sent while autograd's backward pass runs: GradientBuckets, RankSum; after it, for a network that
computes its own gradients) and advantages are normalised with the
whole minibatch's mean and std, so N ranks on one process's data take one process's step. Rank 0
alone writes config.yaml, TensorBoard, checkpoints and videos; episode statistics are gathered
from every rank. A stop signal is agreed on at update boundaries, so every rank stops after the
same update. Backend: gloo on CPU, nccl on CUDA (cuda:LOCAL_RANK); collectives time out after
`dist_timeout` seconds, so a rank that dies cannot hang the others.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist

from agents.config import ConfigError, TrainConfig
from agents.networks.actor_critic import ActorCritic
from envs.registry import is_token_env

# Gradients are summed over the ranks in buckets of at least this many elements (4 MiB of float32),
# the last layers' first: a bucket goes out while the backward pass still computes the earlier ones.
BUCKET_ELEMENTS = 1 << 20

# On gloo a small collective costs its latency, not its bytes, and all_reduce's is the longest:
# 2 ranks over loopback on the 2-core machine, all_reduce of 9,000 floats (CartPole's gradient)
# 1.1–1.7 ms, all_gather of it 0.4–0.45 ms; the two cross between 2^17 and 2^19 gathered elements.
# Below this many, a sum over the ranks is gathered and added up in each rank (RankSum).
GATHER_ELEMENTS = 1 << 18

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
    _buckets: GradientBuckets | None = field(default=None, repr=False)

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

    def broadcast_parameters(self, module: ActorCritic) -> None:
        """Every rank starts from rank 0's weights."""
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)
        module.reset_cache()  # a collective's write bumps no version counter

    # ---------------------------------------------------------- agreement
    def any(self, *flags: bool) -> tuple[bool, ...]:
        """For each flag, whether any rank raised it (stop requests, a callback's early finish:
        seen at an update boundary by all, so that every rank leaves the loop together)."""
        values = self.sum(torch.tensor([1.0 if flag else 0.0 for flag in flags]))
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

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` ← its sum over the ranks (RankSum), returned."""
        return RankSum(tensor, self.world_size).wait()

    # ------------------------------------------------- GradientSync (agents/core/update.py)
    def normalize_advantages(self, minibatches: list[torch.Tensor]) -> list[torch.Tensor]:
        """(Â − μ) / (σ + 1e-8) for each minibatch, with μ, σ (Bessel-corrected) of that minibatch
        over all ranks, from Σ Â, Σ Â² and count summed over the ranks of every minibatch at once. A
        minibatch of one sample over all ranks is left as it is, as in one process."""
        moments = torch.tensor(
            [[float(part.double().sum()), float(part.double().square().sum()), float(part.numel())]
             for part in minibatches],
            dtype=torch.float64,
        )
        moments = self.sum(moments)
        normalized = []
        for part, (total, squares, count) in zip(minibatches, moments.tolist()):
            if count <= 1:
                normalized.append(part)
                continue
            mean = total / count
            variance = max(squares - count * mean * mean, 0.0) / (count - 1.0)
            normalized.append((part - mean) / (float(np.sqrt(variance)) + 1e-8))
        return normalized

    def backward(self, backward: Callable[[], None], parameters: list[torch.Tensor]) -> None:
        """backward() with the gradients averaged over the ranks while it runs (GradientBuckets);
        when it returns, every parameter's .grad is its mean over the ranks."""
        key = tuple(id(p) for p in parameters)
        if self._buckets is None or self._buckets.key != key:
            if self._buckets is not None:
                self._buckets.remove()
            self._buckets = GradientBuckets(parameters, self.world_size)
        self._buckets.backward(backward)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        keys = sorted(values)
        vector = self.sum(torch.tensor([values[k] for k in keys], dtype=torch.float64))
        return {k: float(v) / self.world_size for k, v in zip(keys, vector.tolist())}

    def wait_for_all(self) -> None:
        """Return once every rank has called this (a barrier)."""
        dist.barrier()

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


class GradientBuckets:
    """Gradient averaging overlapped with the backward pass, the scheme of torch DDP's reducer (Li et
    al. 2020, "PyTorch Distributed", VLDB): the parameters are grouped, in reverse of their order
    in the module (roughly the order backward finishes their gradients: heads first, first layer
    last), into buckets of at least BUCKET_ELEMENTS; as soon as every gradient of a bucket has
    been accumulated (a post-accumulate-grad hook), the bucket is flattened and summed over
    the ranks asynchronously (RankSum), and the backward pass goes on computing the earlier
    layers meanwhile. Buckets go out in bucket order on every rank, so the ranks' collectives
    always match. After the backward pass, buckets still waiting (a parameter that got no
    gradient counts as zeros) go out, and each gradient is set to its bucket's sum ÷ world size.
    On the Nature CNN the fully connected layer (1.6 M of 1.69 M weights) is one bucket, sent
    while the three convolutions' gradients are computed."""

    def __init__(self, parameters: list[torch.Tensor], world_size: int) -> None:
        self.key = tuple(id(p) for p in parameters)
        self.world_size = world_size
        self.buckets: list[list[torch.Tensor]] = [[]]
        filled = 0  # elements in the last bucket
        for parameter in reversed(parameters):
            if filled >= BUCKET_ELEMENTS:
                self.buckets.append([])
                filled = 0
            self.buckets[-1].append(parameter)
            filled += parameter.numel()
        self.bucket_of = {id(p): number for number, bucket in enumerate(self.buckets) for p in bucket}
        self.armed = False
        self.waiting: list[int] = []  # gradients not yet accumulated, per bucket
        self.sent: list[tuple[RankSum, list[torch.Tensor]]] = []
        self.hooks = [p.register_post_accumulate_grad_hook(self._accumulated) for p in parameters]

    def remove(self) -> None:
        for hook in self.hooks:
            hook.remove()

    def backward(self, backward: Callable[[], None]) -> None:
        """backward(), sending each bucket as its gradients arrive (through autograd's engine: a
        network that fills .grad itself sends them all after it), then the means in .grad."""
        self.waiting = [len(bucket) for bucket in self.buckets]
        self.sent = []
        self.armed = True
        try:
            backward()
        finally:
            self.armed = False
        while len(self.sent) < len(self.buckets):
            self._send(len(self.sent))
        for total, bucket in self.sent:
            flat = total.wait()
            flat /= self.world_size
            offset = 0
            for parameter in bucket:
                mean = flat[offset : offset + parameter.numel()].view_as(parameter)
                if parameter.grad is None:
                    parameter.grad = mean.clone()
                else:
                    parameter.grad.copy_(mean)
                offset += parameter.numel()

    def _accumulated(self, parameter: torch.Tensor) -> None:
        if not self.armed:  # a backward pass outside the update (nothing to average)
            return
        self.waiting[self.bucket_of[id(parameter)]] -= 1
        while len(self.sent) < len(self.buckets) and self.waiting[len(self.sent)] == 0:
            self._send(len(self.sent))

    def _send(self, number: int) -> None:
        bucket = self.buckets[number]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in bucket]
        flat = torch.cat([grad.reshape(-1) for grad in grads])
        self.sent.append((RankSum(flat, self.world_size), bucket))


class RankSum:
    """Σ over the ranks of one tensor, started at once, in place when `wait()` returns it. A CPU
    tensor small enough (n × ranks ≤ GATHER_ELEMENTS) is gathered from every rank and added up in
    rank order, the same sum on every rank; anything else (large, or on CUDA, where nccl's
    all_reduce is fast) is all-reduced."""

    def __init__(self, tensor: torch.Tensor, world_size: int) -> None:
        self.tensor = tensor
        self.gathered: torch.Tensor | None = None
        if tensor.device.type == "cpu" and tensor.numel() * world_size <= GATHER_ELEMENTS:
            # gloo takes the ranks' tensors concatenated, not stacked
            self.gathered = tensor.new_empty(world_size * tensor.numel())
            self.work = dist.all_gather_single(self.gathered, tensor.reshape(-1), async_op=True)
        else:
            self.work = dist.all_reduce(tensor, async_op=True)

    def wait(self) -> torch.Tensor:
        self.work.wait()
        if self.gathered is not None:
            torch.sum(self.gathered.view(-1, *self.tensor.shape), dim=0, out=self.tensor)
        return self.tensor


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
