"""Training configuration: typed sections with defaults (sections.py), range checks (checks.py),
YAML files with inheritance and command-line overrides (loading.py). Imports nothing of agents/:
every other layer reads it."""

from agents.config.checks import MAX_SEED, validate
from agents.config.loading import (
    RENAMED_KEYS,
    apply_overrides,
    apply_values,
    config_from_dict,
    config_to_dict,
    flatten_dict,
    load_config,
    parse_yaml,
    read_yaml_config,
    upgrade_saved_config,
)
from agents.config.sections import NetworkConfig, PipelineConfig, PPOConfig, RLHFConfig, TrainConfig
from envs.options import AtariOptions, ConfigError, EnvOptions

__all__ = [
    "MAX_SEED", "RENAMED_KEYS", "AtariOptions", "ConfigError", "EnvOptions", "NetworkConfig", "PPOConfig",
    "PipelineConfig", "RLHFConfig", "TrainConfig", "apply_overrides", "apply_values", "config_from_dict",
    "config_to_dict", "flatten_dict",
    "load_config", "parse_yaml", "read_yaml_config", "upgrade_saved_config", "validate",
]
