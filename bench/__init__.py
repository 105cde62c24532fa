"""Benchmarks of our PPO against Stable-Baselines3's: learning curves (bench.compare) and speed
(bench.sps). See bench/README.md for how each hyperparameter is mapped and where the two differ."""
