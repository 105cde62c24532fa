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


@pytest.mark.parametrize(
    "override, expected",
    [("total_timesteps=1e6", 1_000_000), ("total_timesteps=2.0e5", 200_000), ("total_timesteps=300", 300)],
)
def test_integer_keys_take_whole_numbers_written_as_floats(override, expected):
    config = load_config(REPO / "configs" / "cartpole.yaml", [override, "network.hidden_sizes=[32.0, 16]"])
    assert config.total_timesteps == expected and type(config.total_timesteps) is int
    hidden = config.network.hidden_sizes
    assert hidden == [32, 16] and all(type(h) is int for h in hidden)


@pytest.mark.parametrize("value", ["1.5", "2.5e-1", ".nan", ".inf"])
def test_integer_keys_refuse_fractions_and_non_finite_floats(value):
    with pytest.raises(ConfigError, match="total_timesteps must be int, got .*, which is not a whole number"):
        load_config(REPO / "configs" / "cartpole.yaml", [f"total_timesteps={value}"])


@pytest.mark.parametrize("seed", [0, 2**32 - 1])
def test_seeds_at_the_ends_of_the_range_are_accepted(seed):
    assert load_config(REPO / "configs" / "cartpole.yaml", [f"seed={seed}"]).seed == seed


@pytest.mark.parametrize("seed", [-1, 2**32])
def test_seeds_outside_numpys_range_are_refused_naming_it(seed):
    with pytest.raises(ConfigError, match=rf"seed must be in 0\.\.4294967295 \(2\*\*32 - 1\), got {seed}"):
        load_config(REPO / "configs" / "cartpole.yaml", [f"seed={seed}"])


@pytest.mark.parametrize(
    "override, unknown, hint",
    [
        ("n_envs=4", "n_envs", "env.num_envs"),  # a key of a section, given without it
        ("frame_skip=2", "frame_skip", "env.atari.frame_skip"),  # two sections deep
        ("ppo.num_envs=4", "ppo.num_envs", "env.num_envs"),  # in the wrong section
        ("ppo.learning_rat=1", "ppo.learning_rat", "ppo.learning_rate"),  # a typo in the right section
        ("sed=1", "sed", "seed"),
        ("envs.num_envs=4", "envs", "env"),  # a section misspelt
    ],
)
def test_unknown_keys_suggest_the_closest_key_of_any_section(override, unknown, hint):
    with pytest.raises(ConfigError, match=rf"^unknown config key '{unknown}'; did you mean '{hint}'\?$"):
        load_config(REPO / "configs" / "cartpole.yaml", [override])


def test_an_unknown_key_like_none_lists_the_keys_of_its_section():
    expected = r"unknown config key 'ppo.xyzzy'; valid keys: learning_rate, anneal_lr"
    with pytest.raises(ConfigError, match=expected):
        load_config(REPO / "configs" / "cartpole.yaml", ["ppo.xyzzy=1"])


def test_a_directory_is_not_a_config_file(tmp_path):
    with pytest.raises(ConfigError, match=f"^{tmp_path} is a directory, not a config file$"):
        load_config(tmp_path)


@pytest.mark.parametrize("target", ["missing.yaml", "folder"])
def test_a_bad_extends_target_names_the_file_that_extends_it(tmp_path, target):
    (tmp_path / "folder").mkdir()
    (tmp_path / "base.yaml").write_text(f"extends: {target}\nseed: 3\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\n")
    problem = "config file not found: " if target == "missing.yaml" else ""
    with pytest.raises(ConfigError) as raised:
        load_config(tmp_path / "child.yaml")
    # The file holding the `extends:` line is base.yaml, not the child.yaml that was loaded.
    assert str(raised.value).startswith(f"'extends: {target}' in {tmp_path / 'base.yaml'}: {problem}")
    assert str(tmp_path / target) in str(raised.value)


def test_frame_skip_on_an_id_that_skips_frames_itself_names_the_config_key():
    cartpole = REPO / "configs" / "cartpole.yaml"
    expected = (r"already skips frames \(frameskip=4\), and env\.atari\.frame_skip=4 would skip again; "
                r"use a <Game>NoFrameskip-v4 id or env\.atari\.frame_skip=1$")
    with pytest.raises(ConfigError, match=expected):
        load_config(cartpole, ["env_id=ALE/Breakout-v5"])
    one = load_config(cartpole, ["env_id=ALE/Breakout-v5", "env.atari.frame_skip=1"])
    assert one.env.atari.frame_skip == 1
    assert load_config(cartpole, ["env_id=BreakoutNoFrameskip-v4"]).env.atari.frame_skip == 4
