"""Config composition (outside a Hydra run) and early validation.

cfg = compose_config(["method=zeroshot", "dataset=oxford_pets"])
validate_config(cfg)          # ConfigError naming the key and the fix, before any heavy work
"""

from transmiter.config import resolvers  # noqa: F401  (registers the configs' resolvers)
from transmiter.config.compose import CONFIG_DIR, compose_config
from transmiter.config.validate import ConfigError, validate_config

__all__ = ["CONFIG_DIR", "ConfigError", "compose_config", "validate_config"]
