"""Agents: actor-critic networks, rollout storage with GAE, and the PPO update."""
