"""Bad input met outside one script's own tables (tests/test_cli.py, test_enjoy.py, test_plot.py):
the entry scripts' shared argument parser (agents/run/cli.py) and the warm-start checkpoint that
training refuses before it writes its run dir (agents/run/setup.py check_trainable)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch

from agents.config import ConfigError, load_config
from agents.run import setup
from agents.run.checkpoint import save_checkpoint
from agents.run.cli import ArgumentParser, add_override_option, seed_int

REPO = Path(__file__).resolve().parent.parent
TOKEN_CONFIG = REPO / "configs" / "token_sort.yaml"


def parser() -> ArgumentParser:
    parser = ArgumentParser()
    parser.add_argument("--config")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--fast", action="store_true")
    parser.add_argument("runs", nargs="*")
    add_override_option(parser, "the test")
    return parser


def refusal(capsys, argv: list[str]) -> str:
    """The one line a refused command line prints (exit status 2)."""
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(argv)
    assert exited.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    "argv, option",
    [
        (["--config", "a.yaml", "--config", "b.yaml"], "--config"),
        (["--config=a.yaml", "--config", "b.yaml"], "--config"),
        (["--config", "a.yaml", "--conf", "b.yaml"], "--config"),  # argparse's abbreviation of --config
        (["--steps", "1", "x", "--steps", "2"], "--steps"),
    ],
)
def test_an_option_with_a_value_given_twice_is_refused(capsys, argv, option):
    assert refusal(capsys, argv) == f"error: argument {option}: given twice; give it once"


def test_flags_and_append_options_may_repeat_and_a_parser_parses_again():
    p = parser()
    args = p.parse_args(["--fast", "--fast", "--set", "a=1", "--set", "b=2", "--config", "a.yaml"])
    assert args.fast and args.overrides == ["a=1", "b=2"] and args.config == "a.yaml"
    assert p.parse_args(["--config", "b.yaml"]).config == "b.yaml"  # the last parse's options are forgotten


@pytest.mark.parametrize(
    "text, ok", [("0", True), ("4294967295", True), ("-3", False), ("4294967296", False)]
)
def test_seed_int_takes_the_seeds_numpy_and_gymnasium_take(text, ok):
    if ok:
        assert seed_int(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError, match=f"expected a seed in 0..4294967295, got {text}"):
            seed_int(text)


# ------------------------------------------------------------------------------ rlhf.init_checkpoint


@pytest.fixture(scope="module")
def token_agent():
    """The transformer of configs/token_sort.yaml and its config."""
    threads = torch.get_num_threads()
    config = load_config(TOKEN_CONFIG, ["env.num_envs=2"])
    envs = setup.make_training_envs(config)
    try:
        agent = setup.make_agent(config, envs, torch.device("cpu"))
    finally:
        envs.close()
        torch.set_num_threads(threads)  # make_agent sets it for the whole process
    return config, agent


def test_init_checkpoint_of_the_same_network_passes(token_agent, tmp_path):
    config, agent = token_agent
    save_checkpoint(tmp_path / "policy.pt", {"model": agent.state_dict()})
    config.rlhf.init_checkpoint = str(tmp_path / "policy.pt")
    setup.check_trainable(config, agent)


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "rlhf.init_checkpoint: no such checkpoint file: "),
        (b"not a checkpoint", "rlhf.init_checkpoint: cannot load checkpoint "),
        ({"model": {"policy_head.weight": torch.zeros(2, 64)}}, "holds weights of another network"),
        ({"model": "weights"}, "holds weights of another network"),
    ],
)
def test_an_unusable_init_checkpoint_is_refused_before_training(token_agent, tmp_path, content, expected):
    config, agent = token_agent
    path = tmp_path / "policy.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        save_checkpoint(path, content)
    config.rlhf.init_checkpoint = str(path)
    with pytest.raises(ConfigError, match=expected):
        setup.check_trainable(config, agent)


@pytest.mark.usefixtures("keep_torch_threads")
def test_train_refuses_a_foreign_init_checkpoint_before_writing_its_run_dir(tmp_path, capsys):
    """The order that matters: the refusal comes before the run dir exists (train.py's main, in this
    process: exit status 2, one error line, no run dir)."""
    sys.path.insert(0, str(REPO))
    try:
        import train as train_script
    finally:
        sys.path.remove(str(REPO))
    save_checkpoint(tmp_path / "policy.pt", {"model": {"policy_head.weight": torch.zeros(2, 64)}})
    run_dir = tmp_path / "run"
    argv = ["--config", str(TOKEN_CONFIG), "--no-progress", "env.num_envs=2", "rlhf.sft_steps=0",
            f"rlhf.init_checkpoint={tmp_path / 'policy.pt'}", f"run_dir={run_dir}"]
    assert train_script.main(argv) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: rlhf.init_checkpoint ") and "another network" in err[0]
    assert not run_dir.exists()
