"""env.vectorization: overlap (envs/overlap.py, collect_rollout_overlapped): two env groups stepping in
turn give the rollout one vector env of all the envs gives."""

from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

import tests.space_envs  # noqa: F401  (registers tests/MaskedIdentity-v0)
import tests.toy_envs  # noqa: F401  (registers tests/Counter-v0)
from agents.config import config_from_dict
from agents.core.rollout import collect_rollout, collect_rollout_overlapped
from agents.core.storage import RolloutStorage
from agents.networks.actor_critic import ActorCritic
from envs.options import ConfigError
from envs.overlap import OverlappedVectorEnv, merge_infos
from envs.vector import finished_episodes, make_vector_env
from tests.test_resume import scalars


def test_merge_infos_concatenates_and_fills_what_one_group_lacks():
    a = {"x": np.array([1, 2]), "_x": np.array([True, True]),
         "final_info": {"episode": {"r": np.array([0.0, 5.0])}, "_episode": np.array([False, True])},
         "_final_info": np.array([False, True])}
    b = {"y": np.array(["t", None], dtype=object), "_y": np.array([True, False])}
    merged = merge_infos([(a, 2), (b, 2)])
    assert merged["x"].tolist() == [1, 2, 0, 0] and merged["_x"].tolist() == [True, True, False, False]
    assert merged["y"].tolist() == [None, None, "t", None]
    assert merged["_y"].tolist() == [False, False, True, False]
    assert merged["final_info"]["episode"]["r"].tolist() == [0.0, 5.0, 0.0, 0.0]
    assert merged["final_info"]["_episode"].tolist() == [False, True, False, False]
    assert merged["_final_info"].tolist() == [False, True, False, False]


class LinearModeAgent(ActorCritic):
    """Fixed random linear logits and value; plays the most likely (valid) action, so two rollouts
    of the same envs agree step for step whatever order the forward passes run in."""

    def __init__(self, obs_size: int, actions: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.policy, self.critic = nn.Linear(obs_size, actions), nn.Linear(obs_size, 1)

    def forward(self, obs):
        if obs.dim() == 1:  # Discrete observations (MaskedIdentity): one-hot
            obs = nn.functional.one_hot(obs.long(), self.policy.in_features)
        obs = obs.float().flatten(1)
        return self.policy(obs), self.critic(obs).squeeze(-1)

    def act(self, obs, deterministic=False, mask=None):
        return super().act(obs, deterministic=True, mask=mask)


def play(env_id: str, vectorization: str, num_envs: int, num_steps: int = 40, segments: int = 2,
         num_workers: int = 0, vector_backend: str = "gymnasium"):
    env = {"num_envs": num_envs, "vectorization": vectorization, "num_workers": num_workers,
           "vector_backend": vector_backend}
    config = config_from_dict({"env_id": env_id, "env": env})
    envs = make_vector_env(config)
    space = envs.single_observation_space
    masked = env_id == "tests/MaskedIdentity-v0"
    obs_size = int(space.n) if hasattr(space, "n") else int(np.prod(space.shape))
    agent = LinearModeAgent(obs_size, int(envs.single_action_space.n))
    if env_id == "tests/Counter-v0":  # always action 0: every episode is cut by the time limit
        with torch.no_grad():
            agent.policy.weight.zero_(), agent.policy.bias.copy_(torch.tensor([1.0, 0.0]))
    storage = RolloutStorage(num_steps, num_envs, space.shape, torch.float32, torch.device("cpu"),
                             mask_size=4 if masked else None)
    obs, infos = envs.reset(seed=7)
    if masked:
        storage.next_mask = torch.as_tensor(np.asarray(infos["action_mask"], dtype=bool))
    obs = torch.as_tensor(obs)
    play_segment = collect_rollout_overlapped if vectorization == "overlap" else collect_rollout
    episodes, rows = [], []
    for _ in range(segments):  # the second segment starts from the pipeline's last observations
        obs = play_segment(agent, envs, storage, obs, lambda infos: episodes.extend(finished_episodes(infos)))
        fields = ("obs", "actions", "logp", "values", "rewards", "terminated", "truncated", "final_values")
        fields += ("action_masks",) if masked else ()
        rows.append({name: getattr(storage, name).clone() for name in fields})
    envs.close()
    return rows, sorted(episodes), obs


NETWORK_OUTPUTS = ("logp", "values", "final_values")


@pytest.mark.parametrize(
    "env_id, num_envs", [("CartPole-v1", 4), ("tests/Counter-v0", 3), ("tests/MaskedIdentity-v0", 5)]
)
def test_overlapped_rollouts_hold_the_rows_of_one_vector_env(env_id, num_envs):
    """CartPole: episodes of every length; Counter: truncations that bootstrap from V(final obs);
    MaskedIdentity: action masks (an unmasked action would end the episode with −10); odd N: groups
    of unequal size."""
    expected_rows, expected_episodes, expected_obs = play(env_id, "sync", num_envs)
    rows, episodes, obs = play(env_id, "overlap", num_envs)
    for expected, got in zip(expected_rows, rows):
        for name in expected:
            if name in NETWORK_OUTPUTS:
                # A forward pass over half the envs may round differently from one over all of them
                # (the CPU's matmul kernels block by batch size): equal to float32 precision.
                torch.testing.assert_close(got[name], expected[name], msg=name)
            else:
                torch.testing.assert_close(got[name], expected[name], rtol=0, atol=0, msg=name)
    assert episodes == expected_episodes and len(episodes) > 0
    torch.testing.assert_close(obs, expected_obs, rtol=0, atol=0)
    if env_id == "tests/Counter-v0":
        assert expected_rows[0]["final_values"].abs().sum() > 0  # the bootstrap path was taken


def test_reset_seeds_env_i_with_seed_plus_i_across_groups():
    overlapped = OverlappedVectorEnv([partial(gym.make, "CartPole-v1")] * 5)
    obs, _ = overlapped.reset(seed=3)
    overlapped.close()
    expected = np.stack([gym.make("CartPole-v1").reset(seed=3 + i)[0] for i in range(5)])
    np.testing.assert_array_equal(obs, expected)


@pytest.mark.parametrize(
    "bad", [{"num_envs": 1}, {"num_envs": 4, "normalize_obs": True}, {"vector_backend": "envpool"}]
)
def test_overlap_refuses_what_it_cannot_split(bad):
    config = config_from_dict({"env_id": "CartPole-v1", "env": {"vectorization": "overlap", **bad}})
    with pytest.raises(ConfigError, match="env.vectorization: overlap"):
        make_vector_env(config)


def test_a_stop_midway_leaves_no_step_under_way():
    """A stop request raised between env steps (EpisodeRecorder) while the other group is stepping:
    that step is collected before the exception goes on, so the workers can be closed at once."""

    class Stop(Exception):
        pass

    calls = 0

    def stop_at_the_third_infos(infos):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise Stop

    config = config_from_dict({"env_id": "CartPole-v1", "env": {"num_envs": 4, "vectorization": "overlap"}})
    envs = make_vector_env(config)
    storage = RolloutStorage(8, 4, (4,), torch.float32, torch.device("cpu"))
    obs, _ = envs.reset(seed=0)
    with pytest.raises(Stop):
        collect_rollout_overlapped(
            LinearModeAgent(4, 2), envs, storage, torch.as_tensor(obs), stop_at_the_third_infos
        )
    assert [group._state.name for group in envs.groups] == ["DEFAULT", "DEFAULT"]
    envs.close()


def test_forward_passes_run_on_one_thread_and_the_count_is_restored_after():
    """The forward passes share the cores with the other group's workers: one torch thread, so none
    waits for a core a worker holds; the learner gets its threads back after the rollout, also
    when the rollout raises."""

    class ThreadCountingAgent(LinearModeAgent):
        counts: list[int] = []

        def act(self, obs, deterministic=False, mask=None):
            self.counts.append(torch.get_num_threads())
            return super().act(obs, deterministic, mask)

    config = config_from_dict({"env_id": "CartPole-v1", "env": {"num_envs": 4, "vectorization": "overlap"}})
    envs = make_vector_env(config)
    storage = RolloutStorage(8, 4, (4,), torch.float32, torch.device("cpu"))
    obs, _ = envs.reset(seed=0)
    agent, before = ThreadCountingAgent(4, 2), torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        collect_rollout_overlapped(agent, envs, storage, torch.as_tensor(obs), lambda infos: None)
        assert set(agent.counts) == {1} and len(agent.counts) == 2 * 8
        assert torch.get_num_threads() == 2

        def fail(infos):
            raise RuntimeError("stop")

        with pytest.raises(RuntimeError):
            collect_rollout_overlapped(agent, envs, storage, torch.as_tensor(obs), fail)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
        envs.close()


def test_a_run_with_overlap_trains_and_counts_every_env_step(tmp_path):
    """Through train(): every update's env steps are counted and episodes are recorded."""
    from agents.run.trainer import train

    config = {"env_id": "CartPole-v1", "total_timesteps": 4 * 4 * 32, "checkpoint_interval": 1,
              "env": {"num_envs": 4, "vectorization": "overlap"}, "ppo": {"num_steps": 32}}
    run = tmp_path / "run"
    train(config_from_dict({**config, "run_dir": str(run)}), progress=False)
    returns = scalars(run)["rollout/ep_rew_mean"]
    assert [step for step, _ in returns] == [update * 4 * 32 for update in range(1, 5)]
    assert all(value >= 8 for _, value in returns)  # CartPole pays 1 per step and lasts ≥ 8 steps
