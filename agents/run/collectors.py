"""Collectors: how the batch of one update is played. Both return the same typed Batch, so the loop
and the PPO update do not know which one ran.

- SegmentCollector (algo ppo): a fixed-length segment of an autoresetting vector env, advantages by
  GAE(γ, λ) from the critic (agents/core/);
- GroupCollector (algo grpo): one completion per env, grouped by prompt, group-relative
  advantages and no critic (agents/rlhf/grpo.py).

With a reference policy (RLHF) a collector also scores the batch under π_ref: the k1 KL goes into
the rewards before GAE, or log π_ref into the batch for the loss's k3 term.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from agents.config import TrainConfig
from agents.core.batch import Batch
from agents.core.rollout import (
    action_mask_of,
    collect_rollout,
    collect_rollout_overlapped,
    obs_to_tensor,
    on_one_torch_thread,
)
from agents.core.storage import RolloutStorage
from agents.networks.actor_critic import ActorCritic
from agents.rlhf.grpo import collect_groups
from agents.rlhf.reference import ReferencePolicy, kl_penalised_rewards
from agents.run.faults import StopRequested, StopSignals
from agents.run.logger import TrainingLogger
from envs.vector import finished_episodes

TEXTS_KEPT = 4  # latest completions kept (and shown in TensorBoard's text tab)
# info keys a reward-model env sets on an episode's last step → the scalar of their mean per update:
# the gold judge's score (what the reward model stands in for) and whether the grammar accepts the text.
JUDGED_INFO = {"gold_score": "rlhf/gold_score", "grammatical": "rlhf/fluency"}


@dataclass
class Rollout:
    batch: Batch
    completions: int  # episodes that ended while playing it
    scalars: dict[str, float] = field(default_factory=dict)  # logged with the update
    token_kl: float | None = None  # mean of log π − log π_ref over the batch (with a reference policy)


class EpisodeRecorder:
    """What finished episodes leave behind: (return, length) into the logger's episode window, the
    judge's values of reward-model envs (averaged per update) and the latest texts of token envs.
    Called between env steps, it is also where a stop signal is noticed."""

    def __init__(self, logger: TrainingLogger, stop: StopSignals, gathered: bool = False) -> None:
        """gathered (under torchrun): finished episodes wait in a list for the trainer to gather
        them from every rank, and a stop request waits for the update boundary, where the ranks
        agree on it."""
        self.logger, self.stop, self.gathered = logger, stop, gathered
        self.pending: list[tuple[float, int]] = []
        self.judged: dict[str, list[float]] = {key: [] for key in JUDGED_INFO}
        self.texts: deque[str] = deque(maxlen=TEXTS_KEPT)

    def on_step_infos(self, infos: dict) -> None:
        if self.gathered:
            self.pending.extend(finished_episodes(infos))
        else:
            self.logger.add_episodes(finished_episodes(infos))
        final = infos.get("final_info", {})
        for key, values in self.judged.items():
            if key in final:
                values += [float(final[key][i]) for i in np.flatnonzero(final[f"_{key}"])]
        if "text" in final:
            self.texts.extend(
                f"{final['prompt_text'][i]} → {final['text'][i]}" for i in np.flatnonzero(final["_text"])
            )
        if self.stop.requested and not self.gathered:  # a safe point: no update since the last one
            raise StopRequested

    def take_gathered(self) -> list[tuple[float, int]]:
        """The episodes waiting to be gathered (see __init__), handed over once."""
        episodes, self.pending = self.pending, []
        return episodes

    def judged_scalars(self) -> dict[str, float]:
        """The mean of each judge value since the last call."""
        scalars = {JUDGED_INFO[key]: float(np.mean(values)) for key, values in self.judged.items() if values}
        for values in self.judged.values():
            values.clear()
        return scalars


def _ignore(infos: dict) -> None:
    """Step infos of a collector without an EpisodeRecorder (benchmarks)."""


class SegmentCollector:
    """PPO's collector: `ppo.num_steps` steps of every env, then GAE (agents/core/gae.py)."""

    def __init__(
        self,
        agent: ActorCritic,
        envs: gym.vector.VectorEnv,
        config: TrainConfig,
        device: torch.device,
        recorder: EpisodeRecorder | None = None,
        reference: ReferencePolicy | None = None,
        with_episodes: bool = False,
        mask_size: int | None = None,
    ) -> None:
        self.agent, self.envs, self.config, self.device = agent, envs, config, device
        self.recorder, self.reference, self.with_episodes = recorder, reference, with_episodes
        space, actions = envs.single_observation_space, agent.distribution
        obs_dtype = torch.from_numpy(np.zeros(0, dtype=space.dtype)).dtype
        self.storage = RolloutStorage(
            config.ppo.num_steps, config.env.num_envs, space.shape, obs_dtype, device,
            actions.action_shape, actions.action_dtype, mask_size,
        )
        self.obs: torch.Tensor | None = None
        # env.vectorization overlap (envs/overlap.py): two env groups, each stepping while the policy
        # picks the other's actions; env.num_workers (envs/shards.py): workers that fill the cores.
        self.play = collect_rollout
        if hasattr(envs, "group_slices"):
            self.play = collect_rollout_overlapped
        elif hasattr(envs, "worker_slices"):
            self.play = on_one_torch_thread(collect_rollout)

    def restart(self, seed: int) -> None:
        """Reset every env with `seed`: the episodes in progress restart (as they do on resume)."""
        next_obs, infos = self.envs.reset(seed=seed)
        self.obs = obs_to_tensor(next_obs, self.device)
        if self.storage.next_mask is not None:
            self.storage.next_mask = action_mask_of(infos, self.device)

    def collect(self) -> Rollout:
        """One segment from the current observations (restart() first), as a batch with GAE advantages."""
        ppo, storage, reference, recorder = self.config.ppo, self.storage, self.reference, self.recorder
        episodes_before = recorder.logger.episodes if recorder else 0
        on_step_infos = recorder.on_step_infos if recorder else _ignore
        self.obs = self.play(
            self.agent, self.envs, storage, self.obs, on_step_infos, self.config.env.bootstrap_truncated
        )
        token_kl = ref_logp = None
        if reference is not None:
            ref_logp = reference.logp(storage.obs.flatten(0, 1), storage.actions.flatten()).view_as(
                storage.logp
            )
            token_kl = float((storage.logp - ref_logp).mean())
            if reference.in_reward:
                storage.rewards = kl_penalised_rewards(
                    storage.rewards, storage.logp, ref_logp, reference.coef
                )
        with torch.inference_mode():
            storage.compute_advantages(self.agent.value(self.obs), ppo.gamma, ppo.gae_lambda)
        batch = storage.flatten(with_episodes=self.with_episodes)
        if ref_logp is not None and not reference.in_reward:
            batch.ref_logp = ref_logp.flatten()
        if recorder is None:
            return Rollout(batch, 0, {}, token_kl)
        return Rollout(batch, recorder.logger.episodes - episodes_before, recorder.judged_scalars(), token_kl)


class GroupCollector:
    """GRPO's collector: `rlhf.group_size` completions per prompt, one per env (agents/rlhf/grpo.py)."""

    def __init__(
        self,
        agent: ActorCritic,
        envs: list[gym.Env],
        config: TrainConfig,
        device: torch.device,
        recorder: EpisodeRecorder,
        reference: ReferencePolicy | None,
        prompt_rng: np.random.Generator,
    ) -> None:
        self.agent, self.envs, self.config, self.device = agent, envs, config, device
        self.recorder, self.reference, self.prompt_rng = recorder, reference, prompt_rng

    def restart(self, seed: int) -> None:
        """Nothing to restart: every round starts new episodes, with prompts drawn from prompt_rng."""

    def collect(self) -> Rollout:
        rollout = collect_groups(
            self.agent, self.envs, self.config.rlhf.group_size, self.prompt_rng, self.device
        )
        self.recorder.logger.add_episodes(list(zip(rollout.rewards.tolist(), rollout.lengths)))
        self.recorder.texts.extend(rollout.texts)
        batch, token_kl = rollout.batch, None
        if self.reference is not None:
            batch.ref_logp = self.reference.logp(batch.obs, batch.actions)
            token_kl = float((batch.logp - batch.ref_logp).mean())
        scalars = {"rlhf/zero_spread_groups": rollout.zero_spread_share}
        return Rollout(batch, len(rollout.lengths), scalars, token_kl)
