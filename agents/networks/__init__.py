"""Actor-critic networks: the interface the PPO core trains, and the MLP, CNNs and transformer behind it."""
