"""env.num_workers (envs/shards.py): N envs in K worker processes give the rollout that one
SyncVectorEnv of the N envs gives, alone and as the two groups of an overlapped rollout."""

from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch

import tests.space_envs  # noqa: F401  (registers tests/MaskedIdentity-v0)
import tests.toy_envs  # noqa: F401  (registers tests/Counter-v0)
from agents.config import ConfigError, config_from_dict, load_config
from envs.overlap import OverlappedVectorEnv
from envs.shards import ShardedVectorEnv, shard_slices
from envs.vector import make_vector_env
from tests.test_overlap import NETWORK_OUTPUTS, play


def test_shards_cover_the_envs_in_order_the_first_ones_one_larger():
    assert shard_slices(10, 3) == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert shard_slices(4, 4) == [slice(0, 1), slice(1, 2), slice(2, 3), slice(3, 4)]
    assert shard_slices(5, 1) == [slice(0, 5)]
    with pytest.raises(ValueError):
        shard_slices(3, 4)


@pytest.mark.parametrize("env_id, num_envs, workers", [
    ("CartPole-v1", 7, 3), ("tests/Counter-v0", 4, 2), ("tests/MaskedIdentity-v0", 5, 2),
])
@pytest.mark.parametrize("vectorization", ["async", "overlap"])
def test_worker_processes_give_the_rows_of_one_vector_env(env_id, num_envs, workers, vectorization):
    """CartPole: episodes of every length (final observations, episode statistics); Counter:
    truncations that bootstrap from V(final obs); MaskedIdentity: action masks in the infos;
    7 envs in 3 workers: shards of unequal size; overlap: two groups of shards."""
    expected_rows, expected_episodes, expected_obs = play(env_id, "sync", num_envs)
    rows, episodes, obs = play(env_id, vectorization, num_envs, num_workers=workers)
    for expected, got in zip(expected_rows, rows):
        for name in expected:
            if name in NETWORK_OUTPUTS and vectorization == "overlap":  # passes over half the envs
                torch.testing.assert_close(got[name], expected[name], msg=name)
            else:
                torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)
    assert episodes == expected_episodes and len(episodes) > 0
    torch.testing.assert_close(obs, expected_obs, rtol=0, atol=0)


def test_env_i_is_seeded_with_seed_plus_i_and_its_spaces_are_one_envs():
    envs = ShardedVectorEnv([partial(gym.make, "CartPole-v1")] * 5, num_workers=2)
    obs, _ = envs.reset(seed=3)
    single = gym.make("CartPole-v1")
    assert envs.single_observation_space == single.observation_space
    assert envs.observation_space.shape == (5, 4) and envs.action_space.shape == (5,)
    envs.close()
    np.testing.assert_array_equal(obs, np.stack([single.reset(seed=3 + i)[0] for i in range(5)]))


def test_close_ends_every_worker():
    envs = ShardedVectorEnv([partial(gym.make, "CartPole-v1")] * 4, num_workers=2)
    envs.reset(seed=0)
    envs.close()
    assert all(process.exitcode is not None for process in envs.processes)


def test_an_env_that_cannot_be_built_is_raised_as_itself():
    def broken():
        raise FileNotFoundError("no ROM for this game")

    with pytest.raises(FileNotFoundError, match="no ROM"):
        ShardedVectorEnv([partial(gym.make, "CartPole-v1"), broken], num_workers=2)


def test_overlap_splits_the_workers_between_its_groups():
    envs = OverlappedVectorEnv([partial(gym.make, "CartPole-v1")] * 7, num_workers=3)
    assert [len(group.processes) for group in envs.groups] == [2, 1]
    assert [group.num_envs for group in envs.groups] == [4, 3]
    envs.close()


@pytest.mark.parametrize("env, message", [
    ({"num_envs": 4, "num_workers": 5}, r"between 0 \(one process per env\) and env.num_envs \(4\), got 5"),
    ({"num_workers": -1}, "env.num_workers must be between 0"),
    ({"num_workers": 2, "vectorization": "sync"}, "env.vectorization: sync steps every env in this process"),
    ({"num_workers": 1, "vectorization": "overlap"}, "env.num_workers must be 0 .* or >= 2"),
    ({"num_workers": 2, "vector_backend": "envpool"}, "vector_backend: envpool steps its envs itself"),
])
def test_refused_at_load_time(env, message, tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("env_id: CartPole-v1\n")
    overrides = [f"env.{key}={value}" for key, value in env.items()]
    with pytest.raises(ConfigError, match=message):
        load_config(str(path), overrides)


def test_auto_means_worker_processes_when_workers_are_asked_for():
    config = config_from_dict({"env_id": "CartPole-v1", "env": {"num_envs": 4, "num_workers": 2}})
    envs = make_vector_env(config)
    assert isinstance(envs, ShardedVectorEnv) and len(envs.processes) == 2
    envs.close()
