"""Spaces stored as plain data in checkpoints (envs/space_codec.py) come back equal."""

import gymnasium as gym
import numpy as np
import pytest

from envs.space_codec import space_from_dict, space_to_dict
from envs.structured import StructuredBox

SPACES = {
    "box vector": gym.spaces.Box(np.array([-1.0, 0.0]), np.array([1.0, np.inf]), dtype=np.float32),
    "uint8 frames": gym.spaces.Box(0, 255, (4, 84, 84), np.uint8),
    "bool planes": gym.spaces.Box(0, 1, (10, 10, 4), np.bool_),
    "discrete": gym.spaces.Discrete(5, start=1),
    "multi discrete": gym.spaces.MultiDiscrete([3, 4]),
    "multi binary": gym.spaces.MultiBinary(6),
    "dict": gym.spaces.Dict(
        {"image": gym.spaces.Box(0, 255, (7, 7, 3), np.uint8), "direction": gym.spaces.Discrete(4)}
    ),
    "tuple": gym.spaces.Tuple((gym.spaces.Discrete(32), gym.spaces.Discrete(11), gym.spaces.Discrete(2))),
}


@pytest.mark.parametrize("name", list(SPACES))
def test_round_trip(name):
    space = SPACES[name]
    assert space_from_dict(space_to_dict(space)) == space


def test_a_structured_box_keeps_its_structure():
    space = StructuredBox(SPACES["dict"])
    back = space_from_dict(space_to_dict(space))
    assert isinstance(back, StructuredBox) and back.structure == space.structure and back == space


def test_uniform_bounds_are_stored_as_one_number():
    assert space_to_dict(SPACES["uint8 frames"])["high"] == 255


def test_other_spaces_are_refused():
    with pytest.raises(ValueError, match="cannot store"):
        space_to_dict(gym.spaces.Text(8))


def test_a_dict_keeps_the_order_its_env_gave():
    """gymnasium sorts a dict's keys but keeps the order of pairs: the flat layout follows it."""
    space = gym.spaces.Dict([("zeta", gym.spaces.Discrete(2)), ("alpha", gym.spaces.Box(0, 1, (2,)))])
    back = space_from_dict(space_to_dict(space))
    assert list(back.spaces) == ["zeta", "alpha"] and back == space
