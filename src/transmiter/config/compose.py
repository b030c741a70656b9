"""Where the config tree lives, and composing it with Hydra's compose API (sub-commands, tests).

The tree ships inside the wheel as `transmiter/conf`; in a source checkout it is `<repo>/conf`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from transmiter.config.schema import register_schemas


def _find_config_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "conf", here.parents[3] / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError("transmiter's config tree (conf/config.yaml) was not found next to the package")


CONFIG_DIR = _find_config_dir()
register_schemas()  # conf/config.yaml and the method files start from them


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "config", return_hydra_config: bool = True
) -> DictConfig:
    """Compose the config as the app would (including `hydra:` so `${hydra:...}` resolves)."""
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name=config_name, overrides=list(overrides), return_hydra_config=return_hydra_config
        )
    if return_hydra_config:
        # Lets `${hydra:...}` interpolations resolve as they do inside a Hydra run.
        HydraConfig.instance().set_config(cfg)
    return cfg
