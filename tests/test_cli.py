"""Bad input to train.py: one `error:` line on stderr, exit status 2, no traceback, nothing written."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
GOOD = "env_id: CartPole-v1\ntotal_timesteps: 256\nenv:\n  num_envs: 2\nppo:\n  num_steps: 64\n"
DIRECTORY = "<config.yaml is a directory>"  # a CASES config text: --config names a directory


def write_config(tmp_path: Path, config_text: str | None) -> None:
    if config_text == DIRECTORY:
        (tmp_path / "config.yaml").mkdir()
    elif config_text is not None:
        (tmp_path / "config.yaml").write_text(config_text)


def run_train(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    config = tmp_path / "config.yaml"
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), "--config", str(config), "--no-progress", *overrides],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        timeout=300,
    )


CASES = {
    "unknown env id": (GOOD.replace("CartPole-v1", "CartPol-v1"), [], "did you mean 'CartPole-v1'"),
    "missing config": (None, [], "config file not found"),
    "malformed yaml": ("env_id: [CartPole-v1\nseed: 1\n", [], "malformed YAML"),
    "unknown key": (GOOD, ["ppo.learning_rat=1e-3"], "did you mean 'ppo.learning_rate'"),
    "unknown key in file": (GOOD + "sed: 3\n", [], "did you mean 'seed'"),
    "wrong type": (GOOD, ["ppo.learning_rate=fast"], "ppo.learning_rate must be float"),
    "wrong type bool": (GOOD, ["ppo.anneal_lr=3"], "ppo.anneal_lr must be bool"),
    "negative learning rate": (GOOD, ["ppo.learning_rate=-1e-3"], "ppo.learning_rate must be > 0"),
    "zero envs": (GOOD, ["env.num_envs=0"], "env.num_envs must be > 0"),
    "minibatch larger than batch": (GOOD, ["ppo.num_minibatches=1000"], "exceeds the batch size"),
    "bad choice": (GOOD, ["env.vectorization=threads"], "env.vectorization must be"),
    "override without =": (GOOD, ["seed"], "must look like key=value"),
    "bad env kwargs": (GOOD, ["env.kwargs={wings: 3}"], "cannot create env"),
    "masks the env has not": (GOOD, ["env.action_masks=on"], "reports no info['action_mask']"),
    "module that does not import": (GOOD.replace("CartPole-v1", "no_such_pkg:Game-v0"), [], "cannot import"),
    "env.imports that do not import": (GOOD, ["env.imports=[no_such_pkg]"], "env.imports: cannot import"),
    "negative seed": (GOOD, ["seed=-1"], "seed must be in 0..4294967295"),
    "init checkpoint for an MLP": (
        GOOD,
        ["rlhf.init_checkpoint=policy.pt"],
        "rlhf.init_checkpoint: needs a token env and the transformer network",
    ),
    "config given twice": (GOOD, ["--config", "config.yaml"], "argument --config: given twice"),
    "config is a directory": (DIRECTORY, [], "config.yaml is a directory, not a config file"),
    "missing extends target": (  # names the file with the extends: line, then the missing target
        "extends: base.yaml\n" + GOOD,
        [],
        ("'extends: base.yaml' in ", "config.yaml: config file not found: ", "base.yaml"),
    ),
    "key without its section": (GOOD, ["n_envs=4"], "key 'n_envs'; did you mean 'env.num_envs'"),
    "frame skip on an id that skips frames": (
        GOOD.replace("CartPole-v1", "ALE/Breakout-v5"),
        [],
        "use a <Game>NoFrameskip-v4 id or env.atari.frame_skip=1",
    ),
    "fraction for an integer": (GOOD, ["total_timesteps=1.5"], "got 1.5, which is not a whole number"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_error_line(tmp_path, name):
    config_text, overrides, expected = CASES[name]
    write_config(tmp_path, config_text)
    before = {p for p in tmp_path.rglob("*")}
    result = run_train(tmp_path, *overrides)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for part in (expected,) if isinstance(expected, str) else expected:
        assert part in lines[0], lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert {p for p in tmp_path.rglob("*")} == before  # no run dir, no file written


def test_good_config_trains_and_prints_the_final_line(tmp_path):
    write_config(tmp_path, GOOD)
    result = run_train(tmp_path, f"run_dir={tmp_path / 'run'}")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    final = next(line for line in lines if line.startswith("final mean_return="))
    assert final.endswith("episodes")
    # Then where things are, with commands to type (the interpreter that ran, not a bare `python`).
    assert f"checkpoint: {tmp_path / 'run' / 'checkpoints' / 'final.pt'}" in lines[lines.index(final) + 2]
    assert lines[-1].endswith(f"{sys.executable} enjoy.py {tmp_path / 'run'} --episodes 3")
    run = tmp_path / "run"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "final.pt").is_file()
    assert list(run.glob("events.out.tfevents.*"))


def test_default_run_dir_name(tmp_path):
    write_config(tmp_path, GOOD)
    result = run_train(tmp_path, "seed=7")
    assert result.returncode == 0, result.stderr
    (run,) = (tmp_path / "runs").iterdir()
    env, config_name, seed, stamp = run.name.split("__")
    assert (env, config_name, seed) == ("CartPole-v1", "config", "7") and stamp


# ------------------------------------------------------------------------------ --resume


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A tiny finished CartPole run: config.yaml, update_000001.pt, update_000002.pt, final.pt."""
    import torch

    from agents.config import config_from_dict
    from agents.run.trainer import train

    run = tmp_path_factory.mktemp("source") / "run"
    config = config_from_dict(
        {"total_timesteps": 128, "torch_threads": 1, "checkpoint_interval": 1, "run_dir": str(run),
         "env": {"num_envs": 2, "vectorization": "sync"}, "ppo": {"num_steps": 32}}
    )
    threads = torch.get_num_threads()
    try:
        train(config, progress=False)
    finally:
        torch.set_num_threads(threads)
    return run


def main_in_process(capsys, *argv: str) -> tuple[int, str, str]:
    """train.py's main in this process (no interpreter start-up per case); parser errors exit."""
    sys.path.insert(0, str(REPO))
    try:
        import train as train_script
    finally:
        sys.path.remove(str(REPO))
    try:
        status = train_script.main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def unfinished_copy(source: Path, target: Path, checkpoints: tuple[str, ...] = ("update_000001.pt",)) -> Path:
    (target / "checkpoints").mkdir(parents=True)
    shutil.copy(source / "config.yaml", target / "config.yaml")
    for name in checkpoints:
        shutil.copy(source / "checkpoints" / name, target / "checkpoints" / name)
    return target


def edited_checkpoint(path: Path, edit) -> None:
    from agents.run.checkpoint import load_checkpoint, save_checkpoint

    state = load_checkpoint(path)
    edit(state)
    save_checkpoint(path, state)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))  # creates a file if it is ever unpickled


def make_resume_case(name: str, source: Path, tmp: Path) -> list[str]:
    """Build one bad --resume case under `tmp`; return train.py's arguments."""
    import torch

    run = tmp / "run"
    if name == "missing dir":
        return ["--resume", str(run)]
    if name == "not a run dir":
        run.mkdir()
        (run / "notes.txt").write_text("hello")
        return ["--resume", str(run)]
    if name == "no checkpoint":
        unfinished_copy(source, run, checkpoints=())
        return ["--resume", str(run)]
    if name == "overrides":
        return ["--resume", str(unfinished_copy(source, run)), "seed=2"]
    if name == "config and resume":
        return ["--resume", str(unfinished_copy(source, run)), "--config", str(run / "config.yaml")]
    if name == "neither":
        return ["--no-progress"]
    if name == "broken config.yaml":
        unfinished_copy(source, run)
        (run / "config.yaml").write_text((run / "config.yaml").read_text() + "sed: 3\n")
        return ["--resume", str(run)]
    if name == "another architecture":
        unfinished_copy(source, run)
        ckpt = run / "checkpoints" / "update_000001.pt"
        edited_checkpoint(ckpt, lambda s: s["config"]["network"].update(hidden_sizes=[8]))
        return ["--resume", str(run)]
    if name == "another env":
        unfinished_copy(source, run)
        edited_checkpoint(
            run / "checkpoints" / "update_000001.pt", lambda s: s["config"].update(env_id="Acrobot-v1")
        )
        return ["--resume", str(run)]
    if name == "weights of another network":
        unfinished_copy(source, run)
        edited_checkpoint(run / "checkpoints" / "update_000001.pt", lambda s: s["model"].update(
            {key: torch.zeros(3) for key in s["model"]}))
        return ["--resume", str(run)]
    if name == "truncated, no fallback":
        unfinished_copy(source, run)
        ckpt = run / "checkpoints" / "update_000001.pt"
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
        return ["--resume", str(run)]
    if name == "crafted pickle":
        unfinished_copy(source, run, checkpoints=())
        torch.save({"model": _RunsCode(tmp / "pwned")}, run / "checkpoints" / "update_000001.pt")
        return ["--resume", str(run)]
    raise AssertionError(name)


RESUME_CASES = {
    "missing dir": "no such run dir",
    "not a run dir": "is not a run dir (no config.yaml)",
    "no checkpoint": "has no checkpoint to resume from",
    "overrides": "seed cannot change (only total_timesteps, device may)",
    "config and resume": "it takes no --config",
    "neither": "one of --config or --resume is required",
    "broken config.yaml": "did you mean 'seed'",
    "another architecture": "was written with network.hidden_sizes=[8]",
    "another env": "was written with env_id='Acrobot-v1'",
    "weights of another network": "does not match the network",
    "truncated, no fallback": "no usable checkpoint",
    "crafted pickle": "no usable checkpoint",
}


def tree(path: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")}


@pytest.mark.parametrize("name", list(RESUME_CASES))
def test_bad_resume_is_one_error_line_and_changes_nothing(name, finished_run, tmp_path, capsys):
    args = make_resume_case(name, finished_run, tmp_path)
    before = tree(tmp_path)
    status, out, err = main_in_process(capsys, *args)
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert RESUME_CASES[name] in lines[0]
    assert out == "" and "Traceback" not in err
    assert tree(tmp_path) == before  # no event file, no checkpoint, nothing renamed
    assert not (tmp_path / "pwned").exists()


def test_bad_resume_in_its_own_process_has_no_traceback(finished_run, tmp_path):
    args = make_resume_case("truncated, no fallback", finished_run, tmp_path)
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: no usable checkpoint") and len(result.stderr.splitlines()) == 1


def test_resuming_a_finished_run_says_so_and_exits_0(finished_run, capsys):
    before = tree(finished_run)
    status, out, err = main_in_process(capsys, "--resume", str(finished_run))
    assert status == 0 and err == ""
    assert out.startswith(f"run {finished_run} is already finished: global step 128 of total_timesteps 128")
    assert tree(finished_run) == before


def test_resume_continues_an_unfinished_run_to_its_end(finished_run, tmp_path, capsys):
    run = unfinished_copy(finished_run, tmp_path / "run")
    status, out, err = main_in_process(capsys, "--resume", str(run), "--no-progress")
    assert status == 0, err
    assert f"run_dir={run} env_steps=128 " in out
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "final.pt",
        "update_000001.pt",
        "update_000002.pt",
    ]
