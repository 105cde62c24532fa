"""Environments: game wrappers, pixel and token envs, and vector envs built from a config.

Importing this package registers the ALE Atari ids and the TokenGen/* ids with gymnasium.
"""

from envs import token_generation  # noqa: F401  (registers TokenGen/DigitSort-v0, TokenGen/Sentiment-v0)
from envs.atari import is_atari, make_atari
from envs.pixels import make_pixel_env
from envs.token_generation import TokenGenerationEnv
from envs.vector import make_vector_env

__all__ = ["TokenGenerationEnv", "is_atari", "make_atari", "make_pixel_env", "make_vector_env"]
