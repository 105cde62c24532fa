"""The run layer: the training loop, its collectors and callbacks, checkpoints, resume, faults, logs,
videos, evaluation, the RLHF pipeline. The only layer that touches disk, signals and TensorBoard."""
