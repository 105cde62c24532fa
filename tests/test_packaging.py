"""The project installs as a package (pyproject.toml): `pip install .` gives a library that a script
outside the repository imports, with the shipped configs and the console commands."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_pip_install_gives_an_importable_library_with_its_configs(tmp_path):
    # setuptools builds in the source tree (build/, *.egg-info): a copy keeps the repo clean.
    source = tmp_path / "source"
    skipped = shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info")
    shutil.copytree(REPO, source, ignore=skipped)
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=600,
    )
    assert build.returncode == 0, build.stderr
    assert (target / "configs" / "cartpole.yaml").is_file()
    assert {"train.py", "enjoy.py", "plot.py"} <= {p.name for p in target.iterdir()}
    script = (
        "import agents, envs, train\n"
        "from agents import PPO\n"
        "from agents.api import config_file\n"
        "print(agents.__file__)\n"
        "print(config_file('configs/cartpole.yaml'))\n"
    )
    # Outside the repo, the repo not on the path: only the installed copy can answer.
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    module, config = result.stdout.splitlines()
    assert module.startswith(str(target)) and config.startswith(str(target))
