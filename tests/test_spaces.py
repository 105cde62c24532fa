"""Every action and observation space the toolkit takes: distributions against hand-computed
log-probs and entropies, image layouts, refusals, and one toy env per space learned to ≥ 90 % of
its best return (tests/space_envs.py)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import tests.space_envs  # noqa: F401  (registers the tests/ ids)
from agents.config import ConfigError, config_from_dict
from agents.networks.distributions import (
    BernoulliDistribution,
    CategoricalDistribution,
    DiagGaussianDistribution,
    MultiCategoricalDistribution,
    distribution_for,
    draw_categorical,
    sample_action,
)
from agents.networks.mlp import MLPActorCritic
from agents.run.evaluation import play_episodes
from agents.run.trainer import train
from envs.structured import StructuredBox
from envs.vector import make_single_env
from tests.space_envs import LENGTH, DictHintEnv, MaskedIdentityEnv

LOG_2PI = math.log(2 * math.pi)


pytestmark = pytest.mark.usefixtures("keep_torch_threads")  # see tests/conftest.py


# ------------------------------------------------------------------- distributions by hand


def test_masked_categorical_puts_no_probability_on_invalid_actions():
    head = torch.zeros(1, 3)
    mask = torch.tensor([[True, True, False]])
    logp, entropy = CategoricalDistribution(3).log_prob_and_entropy(head, torch.tensor([0]), mask)
    assert logp.item() == pytest.approx(math.log(0.5)) and entropy.item() == pytest.approx(math.log(2))
    draws = CategoricalDistribution(3).sample(head.expand(1000, 3), mask=mask.expand(1000, 3))[0]
    assert set(draws.tolist()) == {0, 1}


def test_multi_categorical_sums_independent_parts():
    head = torch.tensor([[0.0, math.log(3.0), 0.0, 0.0, 0.0]])  # parts [2] and [3]
    logp, entropy = MultiCategoricalDistribution([2, 3]).log_prob_and_entropy(head, torch.tensor([[1, 2]]))
    assert logp.item() == pytest.approx(math.log(0.75) + math.log(1 / 3))
    assert entropy.item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) + math.log(3))


def test_bernoulli_bits():
    head = torch.tensor([[0.0, math.log(3.0)]])  # p = 0.5 and 0.75
    logp, entropy = BernoulliDistribution(2).log_prob_and_entropy(head, torch.tensor([[1, 0]]))
    assert logp.item() == pytest.approx(math.log(0.5) + math.log(0.25))
    assert entropy.item() == pytest.approx(math.log(2) - (0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert BernoulliDistribution(2).sample(head, deterministic=True)[0].tolist() == [[0, 1]]


def test_diagonal_gaussian_against_torch_distributions():
    gaussian = DiagGaussianDistribution(np.full(2, -1.0), np.full(2, 1.0))
    with torch.no_grad():
        gaussian.log_std.copy_(torch.tensor([0.0, math.log(2.0)]))
    mean, action = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]])
    logp, entropy = gaussian.log_prob_and_entropy(mean, action)
    reference = torch.distributions.Normal(mean, torch.tensor([1.0, 2.0]))
    assert logp.item() == pytest.approx(reference.log_prob(action).sum().item())
    assert logp.item() == pytest.approx((-0.5 - 0.5 * LOG_2PI) + (-math.log(2) - 0.5 * LOG_2PI))
    assert entropy.item() == pytest.approx(reference.entropy().sum().item())
    # The env gets the sample clipped to the bounds; the buffer keeps it unclipped.
    assert gaussian.to_env(torch.tensor([[3.0, -0.5]])).tolist() == [[1.0, -0.5]]


def test_squashed_gaussian_adds_the_tanh_log_det_and_lands_inside_the_bounds():
    squashed = DiagGaussianDistribution(np.array([0.0]), np.array([4.0]), squash=True)
    u = torch.tensor([[0.5]])
    logp, _ = squashed.log_prob_and_entropy(torch.zeros(1, 1), u)
    expected = -0.125 - 0.5 * LOG_2PI - math.log(1 - math.tanh(0.5) ** 2 + 1e-6)
    assert logp.item() == pytest.approx(expected, rel=1e-6)
    assert squashed.to_env(torch.tensor([[0.0], [50.0]])).tolist() == [[2.0], [4.0]]


def test_unsupported_spaces_are_refused_by_name():
    with pytest.raises(ConfigError, match="action space Box.*not supported"):
        distribution_for(gym.spaces.Box(0, 3, (2,), np.int64))
    config = config_from_dict({"env_id": "tests/TextObservation-v0"})
    with pytest.raises(ConfigError, match="observation space Text.* at observation is not supported"):
        train(config, progress=False)
    with pytest.raises(ConfigError, match=r"observation space Text.* at observation\['mission'\] is not"):
        StructuredBox(gym.spaces.Dict({"image": gym.spaces.Box(0, 1, (2,)), "mission": gym.spaces.Text(5)}))


# ------------------------------------------------------------------------ image layouts


def test_channels_last_and_channels_first_frames_give_the_same_network_input():
    options = config_from_dict({"env_id": "tests/ColourHWC-v0"}).env
    hwc, chw = make_single_env("tests/ColourHWC-v0", options), make_single_env("tests/ColourCHW-v0", options)
    assert hwc.observation_space == chw.observation_space == gym.spaces.Box(0, 255, (3, 10, 10), np.uint8)
    for seed in range(3):
        assert np.array_equal(hwc.reset(seed=seed)[0], chw.reset(seed=seed)[0])
        assert np.array_equal(hwc.step(0)[0], chw.step(0)[0])
    planes = make_single_env("tests/ColourPlanes-v0", options)
    frame = planes.reset(seed=0)[0]
    assert frame.shape == (3, 10, 10) and frame.dtype == np.uint8 and set(np.unique(frame)) == {0, 255}


def test_an_mlp_reads_uint8_images_as_the_cnns_do_scaled_to_0_1_but_not_a_uint8_vector():
    """network.kind mlp on (C, H, W) uint8 frames: the same output as the same weights fed the
    frame / 255 as a float vector (SB3 scales image spaces for any policy); Atari-RAM-like uint8
    vectors stay numbers."""
    image_space = gym.spaces.Box(0, 255, (3, 10, 10), np.uint8)
    float_space = gym.spaces.Box(0.0, 1.0, (300,), np.float32)
    torch.manual_seed(0)
    on_images = MLPActorCritic(image_space, gym.spaces.Discrete(3), [16], "relu")
    on_floats = MLPActorCritic(float_space, gym.spaces.Discrete(3), [16], "relu")
    on_floats.load_state_dict(on_images.state_dict())
    frames = torch.randint(0, 256, (4, 3, 10, 10), dtype=torch.uint8)
    for got, want in zip(on_images(frames), on_floats(frames.reshape(4, -1).float() / 255.0)):
        torch.testing.assert_close(got, want)
    ram = MLPActorCritic(gym.spaces.Box(0, 255, (128,), np.uint8), gym.spaces.Discrete(3), [16], "relu")
    assert ram.input_scale == 1.0


# ------------------------------------------------------------------------- toy learning

# Advantages are not normalised: once a discrete toy is solved every advantage is close to 0, and
# normalising blows that noise up to unit size, which at this learning rate undid a solved
# ColourPlanes in 1 to 2 of seeds 1-12. Mirror (continuous actions) learns better with it.
TOY = {
    "seed": 1, "torch_threads": 1, "checkpoint_interval": 0, "env": {"num_envs": 8},
    "ppo": {"num_steps": 32, "num_minibatches": 4, "update_epochs": 4, "learning_rate": 3e-3, "gamma": 0.5,
            "anneal_lr": False, "norm_adv": False},
}
LEARNED = [  # env id, env steps, ppo overrides
    ("tests/MatchTwo-v0", 15_000, {}),
    ("tests/CopyBits-v0", 15_000, {}),
    ("tests/Mirror-v0", 30_000, {"norm_adv": True}),
    ("tests/MaskedIdentity-v0", 10_000, {}),
    ("tests/ColourHWC-v0", 10_000, {}),
    ("tests/ColourPlanes-v0", 10_000, {}),
    ("tests/DictHint-v0", 10_000, {}),
]


@pytest.mark.parametrize("env_id, steps, ppo", LEARNED, ids=[row[0].split("/")[1] for row in LEARNED])
def test_a_toy_env_of_each_space_is_learned_to_90_percent(env_id, steps, ppo, tmp_path):
    MaskedIdentityEnv.invalid_actions_taken = DictHintEnv.invalid_actions_taken = 0
    config = config_from_dict(
        {**TOY, "env_id": env_id, "total_timesteps": steps, "run_dir": str(tmp_path),
         "ppo": {**TOY["ppo"], **ppo}}
    )
    result = train(config, progress=False)
    played = play_episodes(result.agent, config, episodes=20, seed=100, deterministic=True)
    mean_return = float(np.mean([episode["return"] for episode in played]))
    assert mean_return >= 0.9 * LENGTH, mean_return
    # Masked from the first step on, in training and in play.
    assert MaskedIdentityEnv.invalid_actions_taken == DictHintEnv.invalid_actions_taken == 0


# ---------------------------------------------------------------------- a user's own game

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def fresh_process(*argv: str):
    """A new interpreter (which has registered none of the tests/ ids) running a script of the repo."""
    import subprocess
    import sys

    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "overrides",
    [
        ["env_id=tests.space_envs:tests/CopyBits-v0"],
        ["env_id=tests/CopyBits-v0", "env.imports=[tests.space_envs]"],
    ],
    ids=["module:id", "env.imports"],
)
def test_a_users_env_module_trains_and_replays_from_its_config_alone(overrides, tmp_path):
    config = tmp_path / "mine.yaml"
    config.write_text("total_timesteps: 512\nenv:\n  num_envs: 2\nppo:\n  num_steps: 64\n")
    run = tmp_path / "run"
    trained = fresh_process(
        "train.py", "--config", str(config), "--no-progress", f"run_dir={run}", *overrides
    )
    assert trained.returncode == 0, trained.stderr
    replayed = fresh_process("enjoy.py", str(run), "--episodes", "2", "--deterministic")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip().splitlines()[-1].endswith("episodes=2")


def test_the_readme_example_game_trains_and_replays(tmp_path):
    """README "Your own game": configs/catch.yaml names examples/catch.py by module:Id."""
    run = tmp_path / "catch"
    trained = fresh_process(
        "train.py", "--config", "configs/catch.yaml", "--no-progress", "total_timesteps=2048",
        f"run_dir={run}",
    )
    assert trained.returncode == 0, trained.stderr
    replayed = fresh_process("enjoy.py", str(run), "--episodes", "2", "--video-dir", str(tmp_path / "videos"))
    assert replayed.returncode == 0, replayed.stderr
    assert len(list((tmp_path / "videos").glob("episode_*.mp4"))) == 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_categorical_draws_are_torch_multinomials_bit_for_bit(dtype):
    """sample_action's draw against torch.multinomial from the same generator state: the same
    actions, and the generator left in the same state (later draws stay the same too)."""
    for seed in range(200):
        generator = torch.Generator().manual_seed(seed)
        logits = torch.randn(8, 2 + seed % 7, generator=generator, dtype=dtype) * (seed % 5)
        probs = logits.log_softmax(-1).exp()
        torch.manual_seed(seed)
        expected = torch.multinomial(probs, 1).squeeze(-1)
        expected_state = torch.get_rng_state()
        torch.manual_seed(seed)
        assert torch.equal(draw_categorical(probs), expected)
        assert torch.equal(torch.get_rng_state(), expected_state)


def test_nan_logits_are_refused_as_torch_multinomial_refuses_them():
    with pytest.raises(ValueError, match="NaN"):
        sample_action(torch.tensor([[0.0, 1.0], [float("nan"), 0.0]]))
