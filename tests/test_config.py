"""Config loading: defaults, inheritance, dotted overrides."""

from pathlib import Path

import pytest

from agents.config import ConfigError, load_config

REPO = Path(__file__).resolve().parent.parent


def test_game_configs_inherit_the_atari_base():
    breakout = load_config(REPO / "configs" / "breakout.yaml")
    pong = load_config(REPO / "configs" / "pong.yaml")
    assert breakout.env_id == "BreakoutNoFrameskip-v4" and pong.env_id == "PongNoFrameskip-v4"
    for config in (breakout, pong):
        assert (config.env.num_envs, config.ppo.num_steps) == (8, 128)
        assert (config.ppo.update_epochs, config.ppo.num_minibatches) == (4, 4)
        assert config.ppo.learning_rate == 2.5e-4 and config.ppo.clip_coef == 0.1
        assert config.ppo.ent_coef == 0.01 and config.total_timesteps == 10_000_000


def test_overrides_are_parsed_as_yaml_and_nested(tmp_path):
    config = load_config(
        REPO / "configs" / "cartpole.yaml",
        ["ppo.learning_rate=1e-3", "network.hidden_sizes=[32, 16]", "seed=5", "ppo.target_kl=0.02"],
    )
    assert config.ppo.learning_rate == 1e-3 and config.network.hidden_sizes == [32, 16]
    assert config.seed == 5 and config.ppo.target_kl == 0.02
    assert config.ppo.gamma == 0.98  # from the file; untouched keys keep the file's values
    assert config.ppo.vf_coef == 0.5  # not in the file: the shared default


def test_child_overrides_parent_and_loops_are_refused(tmp_path):
    (tmp_path / "base.yaml").write_text("seed: 3\nppo:\n  gamma: 0.9\n  vf_coef: 1.0\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nppo:\n  gamma: 0.5\n")
    config = load_config(tmp_path / "child.yaml")
    assert (config.seed, config.ppo.gamma, config.ppo.vf_coef) == (3, 0.5, 1.0)
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops"):
        load_config(tmp_path / "loop.yaml")


def test_integers_are_accepted_for_floats_but_not_bools_for_ints():
    assert load_config(REPO / "configs" / "cartpole.yaml", ["ppo.learning_rate=1"]).ppo.learning_rate == 1.0
    with pytest.raises(ConfigError, match="seed must be int"):
        load_config(REPO / "configs" / "cartpole.yaml", ["seed=true"])
