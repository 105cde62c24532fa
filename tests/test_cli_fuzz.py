"""Property: train.py, enjoy.py and plot.py, run with any command line built from their options, a
few values and the paths of a working dir full of files of every kind (configs, random YAML, binary
junk, empty files, directories, a real run dir), end with exit status 0 or 2. With 2, stderr is
exactly one `error:` line, there is no traceback, and the working dir is as it was. Nothing is ever
written outside it.

The scripts run in this process (their main(argv); argparse's refusals raise SystemExit), each
example in a fresh temporary dir used as the cwd. Training and playing are stubbed: every check of
bad input happens before them, and a command line that passes all the checks reaches the stub,
which counts as status 0 and costs nothing. tests/test_config_fuzz.py covers config dicts alone;
this covers the way from a command line to them.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.tiny_runs import tiny_run

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the entry scripts live at the top of the repository, not in a package
try:
    import enjoy
    import plot
    import train
finally:
    sys.path.remove(str(REPO))

# ------------------------------------------------------------------------------ the working dir

GOOD = "env_id: CartPole-v1\ntotal_timesteps: 256\nenv:\n  num_envs: 2\nppo:\n  num_steps: 64\n"
CONFIG_TEXTS = [  # valid ones and ones that fail in a single key, an extends: or a warm start
    GOOD,
    "extends: b.yaml\nseed: 2\n",
    "extends: a.yaml\n",  # a loop when it is a.yaml itself
    "extends: dir\n",
    "extends: missing.yaml\n",
    GOOD + "rlhf:\n  init_checkpoint: c.pt\n",
    "env_id: ALE/Breakout-v5\n",
    "pipeline:\n  enabled: true\n",
    "total_timesteps: 1e6\nn_envs: 4\n",
]
FILE_NAMES = [
    "a.yaml", "b.yaml", "empty.yaml", "junk.bin", "dir", "c.pt",
    "run/config.yaml", "run/checkpoints/final.pt", "run/events.out.tfevents.1",
]
YAML_KEYS = st.sampled_from(["env_id", "seed", "env", "num_envs", "ppo", "learning_rate", "extends", "x"])
RANDOM_YAML = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**12) | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(YAML_KEYS | st.text(max_size=3),
                                                                     children, max_size=3),
    max_leaves=8,
).map(lambda data: yaml.safe_dump(data, allow_unicode=True))
CONTENT = st.one_of(
    st.sampled_from(CONFIG_TEXTS),
    RANDOM_YAML,
    st.binary(max_size=64),  # junk
    st.just(""),  # empty
    st.just(None),  # a directory
)
FILES = st.dictionaries(st.sampled_from(FILE_NAMES), CONTENT, max_size=6)

# ------------------------------------------------------------------------------ command lines

GOOD_RUN = ["good", "good/config.yaml", "good/checkpoints/final.pt"]  # a copy of a real run
PATHS = [*FILE_NAMES, *GOOD_RUN, "good.yaml", "missing.yaml", ".", ""]
LIKELY_PATHS = {  # drawn as often as all PATHS together: the paths a script may accept
    "train": ["good.yaml", "good/config.yaml", "good"],
    "enjoy": ["good", "good/checkpoints/final.pt"],
    "plot": ["good", "."],  # ".": a folder of runs, holding good/ and maybe run/
}
OVERRIDES = [
    "seed=-1", "seed=3", "seed=4294967296", "total_timesteps=1e6", "total_timesteps=1.5", "n_envs=4",
    "env.num_envs=0", "env.num_envs=2", "ppo.learning_rate=fast", "env_id=ALE/Breakout-v5", "=", "seed",
    "ppo=3", "env.atari.frame_skip=1", "rlhf.init_checkpoint=c.pt", "pipeline.enabled=true", "run_dir=out",
    "extends=a.yaml", "env.kwargs={wings: 3}", "ppo.num_minibatches=1000", "device=cuda",
]
OPTIONS = {  # option: values to give it (None: a flag)
    "train": {"--config": PATHS, "--resume": PATHS, "--no-progress": [None]},
    "enjoy": {
        "--episodes": ["1", "2", "0", "x"], "--seed": ["0", "7", "-3", "4294967296", "x"],
        "--max-steps": ["1", "0"], "--device": ["cpu", "auto", "cuda", "gpu"],
        "--video-dir": ["videos", "good.yaml", "dir", "junk.bin/videos"], "--deterministic": [None],
    },
    "plot": {"-o": ["out.png", "x.svg", "out.xyz", "dir", "missing/out.png"], "--tag": [
        "rollout/ep_rew_mean", "nope/tag"]},
}
TOKENS = {  # for command lines in any order
    script: ["--bogus", "--help", *options, *{v for values in options.values() for v in values if v}]
    for script, options in OPTIONS.items()
}
TOKENS["train"] += OVERRIDES


def option(script: str) -> st.SearchStrategy:
    """One option of `script` with one of its values: ["--seed", "-3"], ["--deterministic"]."""
    return st.sampled_from(sorted(OPTIONS[script])).flatmap(
        lambda name: st.sampled_from(OPTIONS[script][name]).map(lambda v: [name] if v is None else [name, v])
    )


def command_line(script: str) -> st.SearchStrategy:
    """Any list of tokens, or (more often) one shaped like a real call, which reaches the checks
    behind the parser: a path and a few options, overrides for train.py."""
    path = st.sampled_from(LIKELY_PATHS[script]) | st.sampled_from(PATHS)
    if script == "train":
        head = st.tuples(st.sampled_from(["--config", "--resume"]), path).map(list)
        rest = st.lists(st.sampled_from(OVERRIDES), max_size=3)
    else:
        head = st.lists(path, min_size=1, max_size=2 if script == "plot" else 1)
        rest = st.lists(option(script), max_size=3).map(lambda options: sum(options, []))
        if script == "plot":
            rest = st.tuples(option(script).filter(lambda o: o[0] == "-o"), rest).map(lambda t: t[0] + t[1])
    shaped = st.tuples(head, rest).map(lambda t: t[0] + t[1])
    anything = st.lists(st.sampled_from(TOKENS[script]) | path, max_size=6)
    return st.one_of(anything, shaped, shaped)


# ------------------------------------------------------------------------------ running


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory, "cartpole")


@pytest.fixture(scope="module")
def stubs():
    """train(), run_pipeline() and play_episodes() replaced by stubs that record the call; the
    scripts import them at call time, from these modules. The stubs first do with the seeds what
    the real calls do first (seed numpy's legacy generator and torch's; reset the game), so that a
    seed the scripts let through still fails here as it would there."""
    import agents.run.evaluation
    import agents.run.pipeline
    import agents.run.trainer

    calls: list[str] = []

    def fake_train(config, *args, **kwargs):
        np.random.RandomState(config.seed)  # what np.random.seed in train()'s seed_everything takes
        torch.Generator().manual_seed(config.seed)
        calls.append("train")
        return SimpleNamespace(
            run_dir=Path("stub"), global_step=0, wall_time=0.0, mean_return=0.0, episodes=0
        )

    def fake_pipeline(*args, **kwargs):
        calls.append("pipeline")

    def fake_play(agent, config, episodes, seed, *args, **kwargs):
        env = agents.run.evaluation.make_eval_env(config, normalization=kwargs.get("normalization"))
        with contextlib.closing(env):
            for episode_seed in (seed, seed + episodes - 1):  # episode i plays with seed + i
                env.reset(seed=episode_seed)
        calls.append("play")
        return [{"return": 0.0, "length": 1, "seed": seed, "truncated": False}]

    threads = torch.get_num_threads()  # enjoy.main sets one thread for the process
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(agents.run.trainer, "train", fake_train)
        patch.setattr(agents.run.pipeline, "run_pipeline", fake_pipeline)
        patch.setattr(agents.run.evaluation, "play_episodes", fake_play)
        patch.setenv("SDL_VIDEODRIVER", "dummy")
        patch.setenv("SDL_AUDIODRIVER", "dummy")
        yield calls
    torch.set_num_threads(threads)


def make_files(root: Path, files: dict[str, str | bytes | None], good_run: Path) -> None:
    """`files` (None: a directory), good.yaml (a valid config) and a copy of `good_run` in good/."""
    (root / "good.yaml").write_text(GOOD)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is None:
            path.mkdir(exist_ok=True)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    shutil.copytree(good_run, root / "good")


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def outside(good_run: Path) -> tuple:
    """Where a stray write would land outside the working dir: the run good/ was copied from
    (its config.yaml names it as run_dir) and the repository's runs/."""
    return tree(good_run), sorted(str(p) for p in REPO.glob("runs/**/*"))


def check_one_call(main: Callable[[list[str]], int], argv: list[str], files: dict, good_run: Path) -> str:
    """Run `main(argv)` in a fresh working dir; assert the contract; return how it ended."""
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        make_files(root, files, good_run)
        before = tree(root)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.chdir(root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse: --help (0) or a refused command line (2)
                status = exc.code
        out, err = out.getvalue(), err.getvalue()
        context = f"argv={argv} files={sorted(files)} status={status}\nstdout={out}\nstderr={err}"
        assert "Traceback" not in out + err, context
        assert status in (0, 2), context
        if status == 2:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), context
            assert tree(root) == before, context  # bad input writes nothing
        return "ok" if status == 0 else "refused"


# Always tried besides the drawn examples: the bad input of issue 17, each of which ended in a
# traceback or a misleading line (as (argv, files)).
EXAMPLES = {
    "train": [
        (["--config", "good.yaml", "seed=-1"], {}),
        (["--config", "good.yaml", "seed=4294967296"], {}),
        (["--config", "good.yaml", "--config", "good/config.yaml"], {}),
        (["--config", "dir"], {"dir": None}),
        (["--config", "a.yaml"], {"a.yaml": "extends: missing.yaml\n"}),
        (["--config", "good.yaml", "total_timesteps=1e6"], {}),  # accepted: reaches the stub
    ],
    "enjoy": [
        (["good", "--seed", "-3"], {}),
        (["good/config.yaml"], {}),
        (["good", "--seed", "1", "--seed", "2"], {}),
    ],
    "plot": [([".", "-o", "out.png"], {"run": None}), (["good", "-o", "a.png", "-o", "b.png"], {})],
}
FUZZ = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,  # the same examples on every run
    database=None,  # no .hypothesis/ folder in the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)
MAINS = {"train": train.main, "enjoy": enjoy.main, "plot": plot.main}


@pytest.mark.parametrize("script", list(MAINS))
def test_any_command_line_ends_with_status_0_or_one_error_line(script, stubs, good_run):
    outcomes: set[str] = set()
    stubs.clear()
    stray_before = outside(good_run)

    def fuzz(argv, files):
        outcomes.add(check_one_call(MAINS[script], argv, files, good_run))

    for argv, files in EXAMPLES[script]:
        fuzz = example(argv=argv, files=files)(fuzz)
    FUZZ(given(argv=command_line(script), files=FILES)(fuzz))()
    assert outside(good_run) == stray_before
    # Both ends were reached: the command lines are neither all refused nor all accepted, and
    # some got past every check to the training or playing they ask for.
    assert outcomes == {"ok", "refused"}
    assert {"train": "train", "enjoy": "play", "plot": None}[script] in [*stubs, None]
