"""Configs from dicts and YAML files: strict typing, `extends:` inheritance, command-line overrides.

A YAML file only states what differs from the defaults of agents/config/sections.py;
`extends: other.yaml` (path relative to the file) inherits another file first, so families of
configs (e.g. all Atari games) share one base. Unknown keys and wrong types are refused, with
the closest valid key suggested.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from agents.config.checks import validate
from agents.config.sections import TrainConfig
from envs.options import ConfigError

# Keys of earlier versions → their names now. A user's YAML that still has one is refused with the
# new name; a run's saved config (config.yaml, a checkpoint's) is read with them renamed
# (upgrade_saved_config), so older run dirs still play, plot and resume.
RENAMED_KEYS = {
    "ppo.kl_coef": "ppo.kl_penalty_coef",
    "ppo.kl_target": "ppo.kl_penalty_target",
    "pipeline.ptx_coef": "rlhf.ptx_coef",
    "pipeline.ptx_batch_size": "rlhf.ptx_batch_size",
}
# How alike (difflib's ratio) an unknown key and a valid one must be for "did you mean".
CLOSE_KEY_CUTOFF = 0.6


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that also reads 1e-3 as a float (YAML 1.1 insists on 1.0e-3)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(v) for v in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        return origin.__name__
    return tp.__name__


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")
    if tp is type(None):
        if value is None:
            return None
    elif origin is Literal:
        if value in typing.get_args(tp):
            return value
    elif origin is list:
        (item_type,) = typing.get_args(tp)
        if isinstance(value, list):
            return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    elif tp is dict or origin is dict:
        if isinstance(value, dict):
            return dict(value)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float):
            # YAML reads 1e6 and 2.0e5 as floats: a whole number written so is meant as a count.
            if not value.is_integer():
                raise ConfigError(f"{key} must be int, got {value!r}, which is not a whole number")
            return int(value)
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, int) and abs(value) > sys.float_info.max:  # float() would overflow
                raise ConfigError(f"{key} must be a finite number, got an integer beyond the float range")
            if not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value!r}")
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a new annotation kind must be taught to this function
        raise TypeError(f"unsupported annotation {tp} for {key}")
    raise ConfigError(f"{key} must be {_type_name(tp)}, got {value!r}")


@functools.cache
def _schema_keys(cls: type = TrainConfig, prefix: str = "") -> tuple[str, ...]:
    """Every dotted key of the config, sections included: env, env.num_envs, env.atari.noop_max..."""
    hints = typing.get_type_hints(cls)
    keys: list[str] = []
    for field in dataclasses.fields(cls):
        keys.append(prefix + field.name)
        if dataclasses.is_dataclass(hints[field.name]):
            keys.extend(_schema_keys(hints[field.name], f"{prefix}{field.name}."))
    return tuple(keys)


def _closest_key(full: str, prefix: str) -> str | None:
    """The valid dotted key most like `full`, in any section: users put keys in the wrong section
    or drop it (n_envs for env.num_envs), so both the whole key and its last component are compared.
    Equal scores go to the key of the same section."""
    last = full.rpartition(".")[2]

    def similarity(a: str, b: str) -> float:
        return difflib.SequenceMatcher(None, a, b).ratio()

    def score(candidate: str) -> tuple[float, bool, float]:
        whole = similarity(full, candidate)
        return max(whole, similarity(last, candidate.rpartition(".")[2])), candidate.startswith(prefix), whole

    best = max(_schema_keys(), key=score)
    return best if score(best)[0] >= CLOSE_KEY_CUTOFF else None


def _unknown_key_error(key: str, valid: list[str], prefix: str) -> ConfigError:
    full = prefix + key
    if full in RENAMED_KEYS:
        return ConfigError(f"config key '{full}' was renamed '{RENAMED_KEYS[full]}'")
    close = _closest_key(full, prefix)
    hint = f"; did you mean '{close}'?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"unknown config key '{full}'{hint}")


def _build(cls: type, data: dict, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise _unknown_key_error(str(key), names, prefix)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, f"{prefix}{key}.")
        else:
            kwargs[key] = _coerce(value, tp, prefix + key)
    return cls(**kwargs)


def config_from_dict(data: dict) -> TrainConfig:
    """Build and validate a TrainConfig from a nested dict (unknown keys and bad types refused)."""
    config = _build(TrainConfig, data)
    validate(config)
    return config


def upgrade_saved_config(data: Any) -> Any:
    """A config saved by an earlier version with its keys renamed as RENAMED_KEYS says. The
    pipeline's PPO stage saved both names with one value, so an old key never overwrites a value
    already under the new name."""
    if not isinstance(data, dict):
        return data
    data = _deep_merge({}, data)
    for old, new in RENAMED_KEYS.items():
        old_section, old_key = old.split(".")
        section = data.get(old_section)
        if isinstance(section, dict) and old_key in section:
            value = section.pop(old_key)
            new_section, new_key = new.split(".")
            data.setdefault(new_section, {}).setdefault(new_key, value)
    return data


def config_to_dict(config: TrainConfig) -> dict:
    return dataclasses.asdict(config)


def flatten_dict(data: dict, prefix: str = "") -> dict[str, object]:
    """{"ppo": {"gamma": 0.99}} → {"ppo.gamma": 0.99}: the dotted keys of the command line."""
    flat: dict[str, object] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _deep_merge(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _not_a_config_file(path: Path) -> str | None:
    """Why `path` cannot be read as a config file, or None if it is a file."""
    if path.is_dir():
        return f"{path} is a directory, not a config file"
    if not path.is_file():
        return f"config file not found: {path}"
    return None


def read_yaml_config(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Read a YAML config as a dict, resolving `extends:` chains (relative to each file)."""
    path = Path(path)
    problem = _not_a_config_file(path)
    if problem:
        raise ConfigError(problem)
    if path.resolve() in _seen:
        raise ConfigError(f"config inheritance loops back to {path}")
    try:
        data = parse_yaml(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"malformed YAML in {path}{where}: {getattr(exc, 'problem', exc)}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config keys, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"'extends' in {path} must be a file name")
        # Named here, the file with the `extends:` line: the target alone does not say which
        # file of a chain to fix.
        problem = _not_a_config_file(path.parent / parent)
        if problem:
            raise ConfigError(f"'extends: {parent}' in {path}: {problem}")
        base = read_yaml_config(path.parent / parent, _seen + (path.resolve(),))
        data = _deep_merge(base, data)
    return data


def apply_values(data: dict, values: dict[str, Any]) -> dict:
    """A copy of `data` with each `{"dotted.key": value}` set (values as Python objects: the
    Python API's keyword overrides)."""
    data = _deep_merge({}, data)
    for key, value in values.items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{key}': '{part}' is not a section")
            node = child
        node[parts[-1]] = value
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `dotted.key=value` overrides; values are parsed as YAML (1e-3, true, [64, 64])."""
    values = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' must look like key=value (e.g. ppo.learning_rate=1e-3)")
        try:
            values[key] = parse_yaml(raw) if raw != "" else None
        except yaml.YAMLError:
            raise ConfigError(f"cannot parse the value of override '{item}'") from None
    return apply_values(data, values)


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config file, apply overrides, check every key, type and range."""
    data = apply_overrides(read_yaml_config(Path(path)), overrides or [])
    return config_from_dict(data)
