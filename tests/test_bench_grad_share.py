"""bench.grad_share: the three value losses on a hand-computed case, a run on a tiny CartPole
checkpoint, a missing checkpoint."""

from __future__ import annotations

import pytest
import torch

from bench import grad_share


def test_value_losses_hand_computed():
    # Sample 1 moved 0.2 > ε = 0.1 from its old value: V_clip = 0.9; sample 2 did not move.
    values = torch.tensor([1.0, 0.5], requires_grad=True)
    old_values, returns = torch.tensor([0.8, 0.5]), torch.tensor([0.0, 1.0])
    losses = grad_share.value_losses(values, old_values, returns, clip=0.1)
    # ours: mean(max(1.0², 0.9²), 0.5²) = (1 + 0.25)/2; SB3: mean(0.9², 0.5²) = (0.81 + 0.25)/2.
    assert losses["ours"].item() == pytest.approx(0.625)
    assert losses["sb3"].item() == pytest.approx(0.53)
    assert losses["plain"].item() == pytest.approx(0.625)
    # SB3's form has no gradient for the sample outside the clip range; d/dV₂ = 2·(0.5 − 1)/2.
    (gradient,) = torch.autograd.grad(losses["sb3"], values)
    assert gradient.tolist() == pytest.approx([0.0, -0.5])


def test_runs_on_a_checkpoint(tmp_path, capsys):
    from agents.config import config_from_dict
    from agents.run.trainer import train

    run = tmp_path / "run"
    config = config_from_dict(
        {"total_timesteps": 128, "torch_threads": 1, "run_dir": str(run), "seed": 3,
         "env": {"num_envs": 2, "vectorization": "sync"}, "ppo": {"num_steps": 32, "update_epochs": 3}}
    )
    threads = torch.get_num_threads()
    try:
        train(config, progress=False)
        assert grad_share.main([str(run / "checkpoints" / "final.pt"), "--segments", "2"]) == 0
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2", "3"]  # one row per epoch
    for row in rows:
        cells = [float(cell) for cell in row.strip("|").split("|")[1:]]
        norms, clip_factors, moved = cells[:4], cells[4:7], cells[7]
        assert all(norm > 0 for norm in norms)
        assert all(0 < factor <= 1 for factor in clip_factors) and 0 <= moved <= 1


def test_missing_checkpoint_is_one_error_line(tmp_path, capsys):
    assert grad_share.main([str(tmp_path / "nothing.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
