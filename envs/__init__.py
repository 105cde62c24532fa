"""Environments: game wrappers, pixel and token envs, and vector envs built from env options.

Importing this package registers every env id the toolkit provides (envs/registry.py). Nothing
here imports agents/: the games do not know the learner.
"""

from envs.atari import is_atari, make_atari
from envs.pixels import make_pixel_env
from envs.registry import check_env_id, is_token_env, register_envs
from envs.token_generation import TokenGenerationEnv
from envs.vector import make_vector_env

__all__ = [
    "TokenGenerationEnv", "check_env_id", "is_atari", "is_token_env", "make_atari", "make_pixel_env",
    "make_vector_env", "register_envs",
]
