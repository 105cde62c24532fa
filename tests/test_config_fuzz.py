"""Property: any nested dict given to config_from_dict is either accepted or refused with a
ConfigError, never another exception; an accepted config survives a round trip unchanged.

The dicts are drawn from the config's own schema (known keys with values of the right type,
in and out of range, of the wrong type, or any junk), plus unknown keys and non-dict sections.
No env is created: this checks parsing and validation only, so it runs in seconds.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.config import ConfigError, TrainConfig, config_from_dict, config_to_dict

JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # nan and ±inf included
    | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=6,
)
KEYS = st.text(max_size=8) | st.integers(-2, 2) | st.none()  # YAML keys need not be strings


def for_type(tp: Any) -> st.SearchStrategy:
    """Values for a field annotated `tp`: mostly of that type (any range), sometimes junk."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        typed = section(tp)
    elif origin in (Union, types.UnionType):
        typed = st.one_of([for_type(option) for option in typing.get_args(tp)])
    elif tp is type(None):
        typed = st.none()
    elif origin is Literal:
        typed = st.sampled_from(typing.get_args(tp)) | st.text(max_size=6)
    elif origin is list:
        (item,) = typing.get_args(tp)
        typed = st.lists(for_type(item), max_size=4)
    elif tp is dict or origin is dict:
        typed = st.dictionaries(st.text(max_size=4), JUNK, max_size=2)
    elif tp is bool:
        typed = st.booleans()
    elif tp is int:
        # Small values hit the range checks; huge ones (beyond float range) the conversions.
        typed = st.integers(-3, 300) | st.integers() | st.integers(10**300, 10**400)
    elif tp is float:
        typed = st.floats() | st.integers(-3, 3) | st.integers(10**300, 10**400)
    elif tp is str:
        typed = st.text(max_size=10)
    else:  # pragma: no cover - a new annotation kind in agents/config.py
        raise AssertionError(f"teach this test the annotation {tp}")
    return st.one_of(typed, typed, typed, JUNK)


def section(cls: type) -> st.SearchStrategy:
    """A dict of any subset of `cls`'s fields, plus now and then an unknown key."""
    hints = typing.get_type_hints(cls)
    known = st.fixed_dictionaries(
        {}, optional={f.name: for_type(hints[f.name]) for f in dataclasses.fields(cls)}
    )
    unknown = st.dictionaries(KEYS, JUNK, max_size=1) | st.just({}) | st.just({})
    return st.tuples(known, unknown).map(lambda parts: {**parts[1], **parts[0]})


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI never flips on a lucky draw
    database=None,  # writes no .hypothesis/ folder into the repository
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.one_of(section(TrainConfig), section(TrainConfig), section(TrainConfig), JUNK))
def test_any_config_is_accepted_or_refused_with_a_config_error(data):
    try:
        config = config_from_dict(data)
    except ConfigError:
        return
    assert isinstance(config, TrainConfig)
    assert config_from_dict(config_to_dict(config)) == config


def test_the_generator_reaches_both_outcomes():
    """Guard against a strategy that only ever builds refused configs."""
    outcomes = set()

    @settings(max_examples=100, deadline=None, derandomize=True, database=None)
    @given(section(TrainConfig))
    def classify(data):
        try:
            config_from_dict(data)
            outcomes.add("accepted")
        except ConfigError:
            outcomes.add("refused")

    classify()
    assert outcomes == {"accepted", "refused"}
