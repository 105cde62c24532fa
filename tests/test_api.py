"""The Python API (agents/api.py): the README's example as written, your own env as a factory or an
instance, predict on the game's own observations (single and batched), save → load without an env,
callbacks that stop, learn again in the same run, the caller's thread count, enjoy on such a run."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import PPO
from tests.space_envs import ColourEnv, DictHintEnv, MirrorEnv
from tests.test_resume import scalars

REPO = Path(__file__).resolve().parent.parent
SMALL = {
    "torch_threads": 1, "checkpoint_interval": 0, "env.num_envs": 8, "ppo.num_steps": 32,
    "ppo.num_minibatches": 4, "ppo.learning_rate": 3e-3, "ppo.gamma": 0.5, "ppo.anneal_lr": False,
}


def test_the_readme_example_runs_as_written(tmp_path):
    """README "From Python": its code block, run by a fresh interpreter outside the repo."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "SDL_VIDEODRIVER": "dummy"},
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cartpole.pt").is_file()


def test_a_factory_env_learns_and_predicts_on_its_own_observations(tmp_path, keep_torch_threads):
    """DictHint: a Dict observation with an image stored channels last and an action_mask entry."""
    DictHintEnv.invalid_actions_taken = 0
    torch.set_num_threads(2)
    model = PPO(DictHintEnv, seed=1, run_dir=str(tmp_path / "run"), **SMALL)
    model.learn(10_000)
    assert torch.get_num_threads() == 2  # the caller's, although training ran on one
    env = DictHintEnv()
    observations = [env.reset(seed=s)[0] for s in range(20)]
    single = [model.predict(obs, deterministic=True)[0] for obs in observations]
    batch, state = model.predict(observations, deterministic=True)
    assert state is None and isinstance(batch, np.ndarray) and batch.shape == (20,)
    assert [int(a) for a in single] == batch.tolist()
    assert np.mean([a == obs["hint"] for a, obs in zip(batch, observations)]) >= 0.9
    # The mask each observation carries rules actions out in predict too.
    assert all(obs["action_mask"][a] for a, obs in zip(batch, observations))
    assert DictHintEnv.invalid_actions_taken == 0

    model.save(tmp_path / "dict.pt")
    loaded = PPO.load(tmp_path / "dict.pt")  # no env: the spaces are in the file
    assert loaded.predict(observations, deterministic=True)[0].tolist() == batch.tolist()
    with pytest.raises(RuntimeError, match="load that \\(PPO.load\\(RUN_DIR\\)\\)"):
        loaded.learn(256)  # a file outside a run dir cannot go on training (its run is elsewhere)


def test_an_instance_env_with_box_actions_and_clipping(tmp_path):
    instance = MirrorEnv()
    model = PPO(instance, seed=1, run_dir=str(tmp_path / "run"), **SMALL).learn(2048)
    obs = np.array([[0.5, -0.5], [1.0, 1.0], [-1.0, 0.2]], np.float32)
    actions, _ = model.predict(obs)
    assert actions.shape == (3, 2) and (np.abs(actions) <= 1).all()  # clipped to the Box as sent
    assert model.predict(obs[0], deterministic=True)[0].shape == (2,)
    with pytest.raises(ValueError, match="expected \\(2,\\) or a batch"):
        model.predict(np.zeros(3, np.float32))


def test_channels_last_and_first_observations_predict_alike(tmp_path):
    model = PPO(lambda: ColourEnv(channels_last=True), seed=1, run_dir=str(tmp_path / "run"), **SMALL)
    model.learn(1024)
    env = ColourEnv(channels_last=True)
    frames = np.stack([env.reset(seed=s)[0] for s in range(5)])  # (5, 10, 10, 3), as the game stores them
    actions, _ = model.predict(frames, deterministic=True)
    logits, _ = model.agent(torch.as_tensor(np.transpose(frames, (0, 3, 1, 2)).copy()))
    assert actions.tolist() == logits.argmax(-1).tolist()


def test_a_callback_stops_and_learn_goes_on_in_the_same_run(tmp_path):
    seen = []

    def stop_at_1024(metrics):
        seen.append(metrics["global_step"])
        assert "train/value_loss" in metrics and "update" in metrics
        assert "rollout/ep_rew_mean" in metrics  # random CartPole games end within each update's 64 steps
        return metrics["global_step"] < 1024

    model = PPO("CartPole-v1", config="configs/cartpole.yaml", seed=3, run_dir=str(tmp_path / "run"),
                **{"env.num_envs": 4, "ppo.num_steps": 64})
    model.learn(10_000, callback=stop_at_1024)
    assert seen == [256, 512, 768, 1024]
    model.learn(512)  # two more updates in the same run
    steps = [step for step, _ in scalars(tmp_path / "run")["train/value_loss"]]
    assert steps == [256, 512, 768, 1024, 1280, 1536]


def test_enjoy_on_a_run_of_an_env_object_says_how_to_pass_the_env(tmp_path):
    run = tmp_path / "run"
    PPO(DictHintEnv, seed=1, run_dir=str(run), **SMALL).learn(256)
    argv = [sys.executable, str(REPO / "enjoy.py"), str(run), "--episodes", "1"]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    refused = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 2 and "--env module:EnvId" in refused.stderr, refused.stderr
    played = subprocess.run(argv + ["--env", "tests.space_envs:tests/DictHint-v0"], cwd=REPO,
                            capture_output=True, text=True, env=env, timeout=300)
    assert played.returncode == 0, played.stderr
    assert played.stdout.strip().splitlines()[-1].endswith("episodes=1")


def test_grpo_is_reachable_through_the_api(tmp_path):
    model = PPO(config="configs/token_sort_grpo.yaml", run_dir=str(tmp_path / "run"),
                **{"rlhf.sft_steps": 0, "rlhf.sample_interval": 1})
    model.learn(200)
    with model.make_env() as env:
        prompt, _ = env.reset(seed=0)
    action, _ = model.predict(prompt)
    assert 0 <= int(action) < model.action_space.n


@pytest.mark.parametrize("steps", [0, -5, 1.5])
def test_learn_refuses_a_budget_that_is_no_positive_integer_before_writing(tmp_path, steps):
    model = PPO("CartPole-v1", run_dir=str(tmp_path / "run"))
    with pytest.raises(ValueError, match="positive integer"):
        model.learn(steps)
    assert not (tmp_path / "run").exists()


def test_make_env_observations_are_normalised_once(tmp_path):
    """With env.normalize_obs, predict applies the frozen statistics to the game's observations;
    make_env gives those raw observations (not normalised a first time)."""
    model = PPO("Pendulum-v1", seed=1, run_dir=str(tmp_path / "run"),
                **{**SMALL, "env.normalize_obs": True}).learn(512)
    with model.make_env() as env:
        obs, _ = env.reset(seed=0)
    raw, _ = __import__("gymnasium").make("Pendulum-v1").reset(seed=0)
    assert np.allclose(obs, raw)


def test_the_rlhf_pipeline_is_reachable_and_its_ppo_stage_becomes_the_model(tmp_path):
    tiny = {
        "rlhf.sft_steps": 20, "network.d_model": 32, "network.n_layers": 1, "pipeline.corpus_size": 200,
        "pipeline.rm_pairs": 64, "pipeline.rm_held_out_pairs": 32, "pipeline.rm_steps": 10,
        "pipeline.rm_batch_size": 16, "pipeline.eval_samples_per_prompt": 2, "env.num_envs": 8,
        "ppo.num_steps": 16,
    }
    model = PPO(config="configs/rlhf_sentiment.yaml", run_dir=str(tmp_path / "rlhf"), **tiny).learn(256)
    assert model.run_dir == tmp_path / "rlhf" / "stages" / "ppo" / "run"
    assert (tmp_path / "rlhf" / "stages" / "eval" / "done").is_file()  # every stage ran
    with model.make_env() as env:
        prompt, _ = env.reset(seed=0)
    assert 0 <= int(model.predict(prompt)[0]) < model.action_space.n
