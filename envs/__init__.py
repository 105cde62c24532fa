"""Environments: construction of (vector) envs from a config, game wrappers and the token env."""
