"""Rollout collection with SAME_STEP autoreset: the bootstrap reads the real final observation."""

import torch

import tests.toy_envs  # noqa: F401  (registers tests/Counter-v0: obs = step count, time limit 3)
from agents.config import config_from_dict
from agents.core.rollout import collect_rollout
from agents.core.storage import RolloutStorage
from agents.networks.actor_critic import ActorCritic
from envs.vector import finished_episodes, make_vector_env


class ScriptedAgent(ActorCritic):
    """Plays a fixed action; V(s) = the observation itself, so bootstrap values are readable."""

    def __init__(self, action: int) -> None:
        super().__init__()
        self.action = action

    def forward(self, obs):
        logits = torch.full((obs.shape[0], 2), -1e9)
        logits[:, self.action] = 0.0
        return logits, obs[:, 0].float()


def collect(action: int, num_steps: int = 6):
    config = config_from_dict({"env_id": "tests/Counter-v0", "env": {"num_envs": 2, "vectorization": "sync"}})
    envs = make_vector_env(config)
    storage = RolloutStorage(num_steps, 2, (1,), torch.float32, torch.device("cpu"))
    episodes = []
    obs, _ = envs.reset(seed=0)
    collect_rollout(
        ScriptedAgent(action),
        envs,
        storage,
        torch.as_tensor(obs),
        lambda infos: episodes.extend(finished_episodes(infos)),
    )
    envs.close()
    return storage, episodes


def test_truncation_bootstraps_from_final_obs_not_reset_obs():
    storage, episodes = collect(action=0)  # never terminates: the time limit truncates at step 3
    assert storage.obs[:, 0, 0].tolist() == [0, 1, 2, 0, 1, 2]  # reset obs follows the end at once
    assert storage.truncated[:, 0].tolist() == [0, 0, 1, 0, 0, 1]
    assert storage.terminated.sum() == 0
    # V(final obs) = 3, the observation after the third step, not the reset observation 0
    assert storage.final_values[:, 0].tolist() == [0, 0, 3, 0, 0, 3]
    assert episodes == [(3.0, 3)] * 4


def test_termination_has_no_bootstrap():
    storage, episodes = collect(action=1)  # terminates at step 2
    assert storage.terminated[:, 0].tolist() == [0, 1, 0, 1, 0, 1]
    assert storage.final_values.abs().sum() == 0
    assert episodes == [(2.0, 2)] * 6
