"""The same seed twice gives bit-identical parameters; another seed does not."""

from agents.config import config_from_dict
from agents.run.trainer import train


def final_parameters(tmp_path, name: str, seed: int):
    config = config_from_dict(
        {
            "env_id": "CartPole-v1",
            "seed": seed,
            "total_timesteps": 4 * 8 * 64,  # four updates
            "run_dir": str(tmp_path / name),
            "env": {"num_envs": 8},
            "ppo": {"num_steps": 64},
        }
    )
    return train(config, progress=False).agent.state_dict()


def test_same_seed_same_parameters(tmp_path):
    first = final_parameters(tmp_path, "a", seed=3)
    second = final_parameters(tmp_path, "b", seed=3)
    other = final_parameters(tmp_path, "c", seed=4)
    assert all((first[k] == second[k]).all() for k in first)
    assert any((first[k] != other[k]).any() for k in first)
