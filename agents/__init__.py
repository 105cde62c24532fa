"""Agents: actor-critic networks, the PPO core, its RLHF relatives and the run layer.

`from agents import PPO` is the Python API (agents/api.py), imported on first use so that the
command-line tools can read a config and refuse bad input without paying for torch's import.
"""

from typing import Any

__all__ = ["PPO"]


def __getattr__(name: str) -> Any:
    if name == "PPO":
        from agents.api import PPO

        return PPO
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
