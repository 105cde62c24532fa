"""Keys that were renamed: refused in a user's config with the new name, read under the new name
from the config.yaml and checkpoints of older run dirs, which still resume and play."""

from pathlib import Path

import pytest
import torch
import yaml

from agents.config import ConfigError, config_from_dict, load_config
from agents.run.checkpoint import load_agent, load_checkpoint, save_checkpoint
from agents.run.resume import find_resume_point
from agents.run.trainer import train

REPO = Path(__file__).resolve().parent.parent
KL_PENALTY_RUN = {
    "env_id": "CartPole-v1", "seed": 3, "total_timesteps": 384, "torch_threads": 1, "checkpoint_interval": 1,
    "keep_checkpoints": 0, "env": {"num_envs": 2, "vectorization": "sync"},
    "ppo": {"num_steps": 32, "num_minibatches": 2, "update_epochs": 2, "loss": "kl_penalty",
            "kl_penalty_coef": 0.3, "kl_penalty_target": 0.02},
}


pytestmark = pytest.mark.usefixtures("keep_torch_threads")  # see tests/conftest.py


@pytest.mark.parametrize(
    "override, new_key",
    [("ppo.kl_coef=0.5", "ppo.kl_penalty_coef"), ("ppo.kl_target=0.1", "ppo.kl_penalty_target"),
     ("pipeline.ptx_coef=0.1", "rlhf.ptx_coef")],
)
def test_an_old_key_in_a_users_config_is_refused_with_its_new_name(override, new_key):
    with pytest.raises(ConfigError, match=f"was renamed '{new_key}'"):
        load_config(REPO / "configs" / "cartpole.yaml", [override])


def test_grpo_refuses_a_value_loss_it_has_no_targets_for():
    with pytest.raises(ConfigError, match="algo grpo has no critic: set ppo.vf_coef: 0"):
        load_config(REPO / "configs" / "token_sort_grpo.yaml", ["ppo.vf_coef=0.5"])
    assert load_config(REPO / "configs" / "token_sort_grpo.yaml").ppo.vf_coef == 0.0


def _with_old_names(config: dict) -> dict:
    ppo = dict(config["ppo"])
    ppo["kl_coef"], ppo["kl_target"] = ppo.pop("kl_penalty_coef"), ppo.pop("kl_penalty_target")
    return {**config, "ppo": ppo}


def test_a_run_dir_written_with_the_old_names_resumes_and_plays(tmp_path):
    """The run as a crash after update 3 leaves it, its config.yaml and checkpoint configs
    rewritten with the keys of before the rename: it resumes to the end, and its agent loads."""
    reference = tmp_path / "reference"
    train(config_from_dict({**KL_PENALTY_RUN, "run_dir": str(reference)}), progress=False)
    old = tmp_path / "old"
    (old / "checkpoints").mkdir(parents=True)
    saved = yaml.safe_load((reference / "config.yaml").read_text())
    (old / "config.yaml").write_text(yaml.safe_dump(_with_old_names(saved), sort_keys=False))
    state = load_checkpoint(reference / "checkpoints" / "update_000003.pt")
    save_checkpoint(
        old / "checkpoints" / "update_000003.pt", {**state, "config": _with_old_names(state["config"])}
    )

    point = find_resume_point(old)
    assert point.config.ppo.kl_penalty_coef == 0.3 and point.config.ppo.kl_penalty_target == 0.02
    result = train(point.config, progress=False, resume=point)
    assert result.global_step == KL_PENALTY_RUN["total_timesteps"]
    assert load_checkpoint(old / "checkpoints" / "final.pt")["update"] == 6
    agent, config = load_agent(old / "checkpoints" / "update_000003.pt")  # what enjoy.py loads
    assert config.ppo.kl_penalty_coef == 0.3
    assert all(torch.equal(a, b) for a, b in zip(agent.state_dict().values(), state["model"].values()))
