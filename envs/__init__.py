"""Environments: game wrappers, pixel and token envs, and vector envs built from a config.

Importing this package registers the ALE Atari ids with gymnasium.
"""

from envs.atari import is_atari, make_atari
from envs.pixels import make_pixel_env
from envs.vector import make_vector_env

__all__ = ["is_atari", "make_atari", "make_pixel_env", "make_vector_env"]
