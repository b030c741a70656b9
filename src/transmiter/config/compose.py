"""Where the config tree lives, and composing it with Hydra's compose API (sub-commands, tests).

The tree ships inside the wheel as `transmiter/conf`; in a source checkout it is `<repo>/conf`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from transmiter.config.schema import ConfigError, TransmiterConfig, check_known_keys, register_schemas


def _find_config_dir() -> Path:
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "conf", here.parents[3] / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError("transmiter's config tree (conf/config.yaml) was not found next to the package")


CONFIG_DIR = _find_config_dir()
register_schemas()  # conf/config.yaml and the method files start from them


def top_level_names() -> list[str]:
    """What may start an override: the root config's keys and the config groups (`conf/<group>/`, hydra)."""
    groups = [p.name for p in CONFIG_DIR.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]
    return sorted({f.name for f in dataclasses.fields(TransmiterConfig)} | set(groups) | {"hydra"})


# Hydra's options that take the next argument as their value
_OPTIONS_WITH_VALUE = {
    "-cn",
    "--config-name",
    "-cp",
    "--config-path",
    "-cd",
    "--config-dir",
    "-c",
    "--cfg",
    "-p",
    "--package",
    "-i",
    "--info",
    "--experimental-rerun",
}
# an override's key: optional ~ / + / ++, then the key (a dotted path, a group path, an @package)
_OVERRIDE_KEY = re.compile(r"^(~|\+\+|\+)?([A-Za-z_][\w\-]*)")


def check_override_keys(args: Sequence[str]) -> None:
    """Refuse a command-line override whose top-level key is neither a key of the config nor a config
    group, before Hydra composes anything, and suggest the closest name: `methd=ft` or `+methd=ft` must never
    run the default job. Options (`-m`, `--cfg job`, ...) and their values are left to Hydra."""
    from transmiter.config.schema import closest

    known = top_level_names()
    previous = ""
    for arg in args:
        option_value = previous in _OPTIONS_WITH_VALUE
        previous = arg
        if arg.startswith("-") or "=" not in arg or option_value:
            continue
        match = _OVERRIDE_KEY.match(arg)
        if match is None or match.group(2) in known:
            continue
        key, prefix = match.group(2), match.group(1) or ""
        guess = closest(key, known)
        rest = arg[len(prefix) + len(key) :]
        hint = f"did you mean {guess}{rest}? " if guess else ""
        raise ConfigError(
            f"unknown key {key!r} in override {arg!r}: {hint}The config's top-level keys and config groups are "
            f"{', '.join(known)}"
            + (" (a `+` does not create a key the config does not know)" if prefix else "")
        )


def compose_config(
    overrides: Sequence[str] = (), config_name: str = "config", return_hydra_config: bool = True
) -> DictConfig:
    """Compose the config as the app would (including `hydra:` so `${hydra:...}` resolves)."""
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            config_name=config_name, overrides=list(overrides), return_hydra_config=return_hydra_config
        )
    check_known_keys(cfg)
    if return_hydra_config:
        # Lets `${hydra:...}` interpolations resolve as they do inside a Hydra run.
        HydraConfig.instance().set_config(cfg)
    return cfg
