"""Every env id the toolkit provides, registered with gymnasium in this one place.

`import envs` (or of any module in it) runs `register_envs()`, so whatever a run was trained on
can be made again from its config.yaml alone, by train.py, --resume, enjoy.py, plot or bench:
- the ALE ids (`BreakoutNoFrameskip-v4`, `ALE/Breakout-v5`, ...) of ale_py;
- TokenGen/DigitSort-v0 and TokenGen/Sentiment-v0 (envs/token_generation.py);
- MinAtar/<Game>-v1 for Asterix, Breakout, Freeway, Seaquest and SpaceInvaders (envs/minatar.py);
- TokenGen/SentimentRM-v0, the sentiment env scored by a reward model file. Loading that file
  needs the network code of agents/, so its entry point is given by name: gymnasium imports it
  only when the env is made, and envs/ itself imports nothing of agents/.
"""

from __future__ import annotations

import difflib
import importlib

import ale_py
import gymnasium as gym

from envs.minatar import GAMES
from envs.options import ConfigError

TOKEN_ENV_PREFIX = "TokenGen/"
# Envs handed to the Python API as objects (agents/api.py) are registered as python/<Class>-v<k>:
# no config can make them again in another process.
USER_ENV_NAMESPACE = "python"
REWARD_MODEL_ENV_ID = "TokenGen/SentimentRM-v0"
ENTRY_POINTS = {
    "TokenGen/DigitSort-v0": "envs.token_generation:make_digit_sort_env",
    "TokenGen/Sentiment-v0": "envs.token_generation:make_sentiment_env",
    REWARD_MODEL_ENV_ID: "agents.run.reward_model_file:make_reward_model_env",
}


def register_envs() -> None:
    """Register the ids above; a second call changes nothing (no "overriding" warnings)."""
    gym.register_envs(ale_py)
    for env_id, entry_point in ENTRY_POINTS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point)
    for name, module in GAMES.items():  # MinAtar: the minatar package is imported when one is made
        env_id = f"MinAtar/{name}-v1"
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="envs.minatar:make_minatar", kwargs={"game": module})


def is_token_env(env_id: str) -> bool:
    """True for the text-generation envs, whose episodes are texts rather than pictures."""
    return env_id.startswith(TOKEN_ENV_PREFIX)


def import_env_modules(modules: list[str]) -> None:
    """Import the modules of `env.imports` (user packages that register their ids on import)."""
    for module in modules:
        _import(module, "env.imports")


def wrapper_specs(wrappers: list[str | dict]) -> list[tuple[type, dict]]:
    """(class, keyword arguments) of each `env.wrappers` entry: "module:Class" or
    {"module:Class": {keyword: value}} (e.g. gymnasium.wrappers:FilterObservation)."""
    specs = []
    for entry in wrappers:
        if isinstance(entry, dict) and len(entry) == 1:
            (name, kwargs), = entry.items()
        else:
            name, kwargs = entry, {}
        module, _, attribute = str(name).partition(":") if isinstance(name, str) else ("", "", "")
        if not module or not attribute or not isinstance(kwargs, dict):
            raise ConfigError(
                f"env.wrappers: each entry is 'module:Class' or {{'module:Class': {{...}}}}, got {entry!r}"
            )
        _import(module, "env.wrappers")
        wrapper = getattr(importlib.import_module(module), attribute, None)
        if not callable(wrapper):
            raise ConfigError(f"env.wrappers: module '{module}' has no wrapper '{attribute}'")
        specs.append((wrapper, kwargs))
    return specs


def _import(module: str, where: str) -> None:
    try:
        importlib.import_module(module)
    except Exception as exc:  # any failure of a user's module is bad input here
        raise ConfigError(f"{where}: cannot import module '{module}': {type(exc).__name__}: {exc}") from None


def check_env_id(env_id: str, imports: list[str] = ()) -> None:
    """Raise ConfigError for an id gymnasium does not know (after importing `imports` and, for
    gymnasium's `module:EnvId` form, `module`), naming the closest registered ids."""
    import_env_modules(list(imports))
    module, _, name = env_id.rpartition(":")
    if module:
        _import(module, f"env id '{env_id}'")
    if name in gym.registry:
        return
    if name.startswith(f"{USER_ENV_NAMESPACE}/"):
        raise ConfigError(
            f"env id '{env_id}' names an env object handed to the Python API, which only that process "
            "knows; pass the env again: enjoy.py --env module:EnvId, or PPO.load(path, env=...)"
        )
    close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise ConfigError(f"unknown env id '{env_id}'{hint}")


register_envs()
