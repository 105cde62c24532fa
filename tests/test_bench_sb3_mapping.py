"""bench.sb3_mapping: SB3 gets our hyperparameters, schedules and network shapes; refusals."""

from __future__ import annotations

import math
from pathlib import Path

import gymnasium as gym
import pytest
import torch

from agents.config import load_config
from agents.networks.build import build_agent
from bench.sb3_mapping import (
    MappingError,
    TruncationAsTermination,
    make_sb3_env,
    make_sb3_model,
    probe_spaces,
    sb3_plan,
)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def plan_for(name: str, *overrides: str):
    config = load_config(CONFIGS / name, list(overrides))
    return config, sb3_plan(config, *probe_spaces(config))


def test_hyperparameters_map_one_to_one():
    config, plan = plan_for(
        "cartpole.yaml", "ppo.num_minibatches=3", "ppo.target_kl=0.03", "ppo.clip_value_loss=false",
        "network.activation=relu", "network.hidden_sizes=[32, 16]",
    )
    kwargs, ppo = plan.ppo_kwargs, config.ppo
    assert kwargs["n_steps"] == ppo.num_steps and kwargs["n_epochs"] == ppo.update_epochs
    assert kwargs["batch_size"] == math.ceil(8 * 32 / 3)  # 86, 86, 84: three minibatches as ours
    assert (kwargs["gamma"], kwargs["gae_lambda"]) == (ppo.gamma, ppo.gae_lambda)
    assert (kwargs["ent_coef"], kwargs["vf_coef"]) == (ppo.ent_coef, ppo.vf_coef)
    assert kwargs["max_grad_norm"] == ppo.max_grad_norm
    assert kwargs["target_kl"] == pytest.approx(0.02)  # SB3 stops at 1.5 × target_kl
    assert kwargs["clip_range_vf"] is None
    assert kwargs["normalize_advantage"] is True
    assert plan.policy == "MlpPolicy" and plan.vec_env == "dummy" and plan.torch_threads == 1
    assert plan.policy_kwargs["net_arch"] == {"pi": [32, 16], "vf": [32, 16]}
    assert plan.policy_kwargs["activation_fn"] == "relu"
    assert plan.policy_kwargs["optimizer_kwargs"] == {"eps": 1e-5}


def test_annealed_schedules_equal_ours_at_every_update():
    # 1000 steps, batch 256: 4 updates, the last one past total_timesteps (both round up).
    config, plan = plan_for("cartpole.yaml", "total_timesteps=1000", "ppo.clip_value_loss=true")
    ppo, batch, total = config.ppo, config.batch_size, config.total_timesteps
    lr_schedule, clip_schedule = plan.ppo_kwargs["learning_rate"], plan.ppo_kwargs["clip_range"]
    assert plan.ppo_kwargs["clip_range_vf"] is clip_schedule  # ours clips the value with clip_coef too
    for update in range(1, config.num_updates + 1):
        # agents/core/schedules.py annealed(), before the rollout
        ours_frac = 1.0 - (update - 1) * batch / total
        sb3_progress = 1.0 - update * batch / total  # SB3, after the rollout
        assert lr_schedule(sb3_progress) == pytest.approx(ppo.learning_rate * ours_frac)
        assert clip_schedule(sb3_progress) == pytest.approx(ppo.clip_coef * ours_frac)


@pytest.mark.parametrize(
    "name, overrides, message",
    [
        ("token_sort_grpo.yaml", [], "GRPO"),
        ("cartpole.yaml", ["ppo.loss=kl_penalty"], "clipped"),
        ("cartpole.yaml", ["network.shared_trunk=true"], "shared"),
        ("cartpole_pixels.yaml", ["network.kind=impala_cnn"], "impala"),
        ("breakout.yaml", ["env.atari.fire_reset=false"], "FIRE"),
    ],
)
def test_configs_sb3_cannot_reproduce_are_refused(name, overrides, message):
    with pytest.raises(MappingError, match=message):
        plan_for(name, *overrides)


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("name", ["cartpole.yaml", "breakout.yaml", "minatar_breakout.yaml"])
def test_sb3_network_has_our_shape(name):
    config, plan = plan_for(name, "env.num_envs=1", "env.vectorization=sync")
    env = make_sb3_env(config, plan, seed=1)
    threads = torch.get_num_threads()
    try:
        model = make_sb3_model(plan, env, seed=1)
        ours = build_agent(config, *probe_spaces(config))
        assert parameter_count(model.policy) == parameter_count(ours)
        assert model.policy.optimizer.defaults["eps"] == config.ppo.adam_eps
        if plan.policy == "MlpPolicy":
            assert type(model.policy.mlp_extractor.policy_net[1]).__name__ == "Tanh"
        elif name == "breakout.yaml":  # SB3 sees the frame stack channels-first, as ours
            assert model.observation_space.shape == (4, 84, 84)
        else:  # MinAtar's 10×10 planes, channels first after our env wrapper, through our small CNN
            assert model.observation_space.shape == (4, 10, 10)
            assert type(model.policy.features_extractor).__name__ == "SmallCNN"
    finally:
        env.close()
        torch.set_num_threads(threads)  # make_sb3_model sets it for the whole process


def test_truncation_as_termination():
    env = TruncationAsTermination(gym.make("CartPole-v1", max_episode_steps=2))
    env.reset(seed=0)
    env.step(0)
    _, _, terminated, truncated, _ = env.step(0)
    assert (terminated, truncated) == (True, False)
    env.close()


NORMALIZED = {"norm_obs": True, "norm_reward": True, "gamma": 0.999}


@pytest.mark.parametrize(
    "name, policy, masked, normalize, algorithm",
    [
        ("pendulum.yaml", "MlpPolicy", False, None, "PPO"),
        ("minigrid_doorkey.yaml", "MultiInputPolicy", False, None, "PPO"),
        ("taxi.yaml", "MlpPolicy", True, None, "MaskablePPO"),
        ("lunar_lander_continuous.yaml", "MlpPolicy", False, NORMALIZED, "PPO"),
        ("minatar_breakout.yaml", "CnnPolicy", False, None, "PPO"),  # our small CNN as its extractor
    ],
)
def test_every_space_reaches_the_sb3_model_its_users_would_pick(name, policy, masked, normalize, algorithm):
    config, plan = plan_for(name, "env.num_envs=2")
    assert (plan.policy, plan.masked, plan.normalize) == (policy, masked, normalize)
    env = make_sb3_env(config, plan, seed=0)
    try:
        model = make_sb3_model(plan, env, seed=0)
        assert type(model).__name__ == algorithm
        assert (type(env).__name__ == "VecNormalize") == (normalize is not None)
        model.learn(total_timesteps=2 * config.ppo.num_steps)  # one rollout and update run
    finally:
        env.close()
