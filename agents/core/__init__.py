"""The PPO core: rollout storage, GAE, rollout collection, the loss and the update.

Maths only: no disk, no signals, no TensorBoard."""
