"""Example games of your own, plugged in by `env_id: module:EnvId` (README, "Your own game")."""
