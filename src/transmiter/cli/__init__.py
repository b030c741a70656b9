"""The `transmiter` command: the Hydra app (one job, or a sweep with -m), plus a few sub-commands.

transmiter [hydra overrides]                 run one job (or a sweep with -m); --help lists the config groups
transmiter data check dataset=NAME [...]     report what a dataset folder is missing
transmiter data fake dataset=NAME [...]      write a tiny fake copy of a dataset layout (tests, smoke)
transmiter report PATH... [--out DIR]        tables (Markdown, CSV) and plots from results records
transmiter regimes DIR... [--out DIR]        TransMiter's gain vs source lead and alignment, per world (experiments/regimes)
transmiter world build [world=NAME]          pretrain (or reuse) a synthetic world's models and data
transmiter world list                        the synthetic worlds and whether their weights are built
transmiter weights check pair=NAME           report whether a run's pretrained weights are here (exit 1 if not)
transmiter features import FOLDER [...]      the study's transfer rows from feature files (the authors' layout)
transmiter features export [...]             a study's features and fine-tuned logits in that layout

Every sub-command imports torch, Lightning and open_clip only once its input is checked, so help texts and
config errors answer at once.
"""

from __future__ import annotations

import importlib
import string
import sys

from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from transmiter.app import main as app_main
from transmiter.config.compose import CONFIG_DIR, check_override_keys, compose_config
from transmiter.config.validate import ConfigError

# sub-command -> the module whose `main(argv)` runs it, imported only when chosen
SUBCOMMANDS = {
    "data": "transmiter.cli.data",
    "report": "transmiter.reporting.report",
    "regimes": "transmiter.cli.regimes",
    "world": "transmiter.cli.world",
    "weights": "transmiter.cli.weights",
    "features": "transmiter.cli.features",
}


def main(argv: list[str] | None = None) -> int | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["help"], ["--commands"]):
        print(__doc__)
        return 0
    if argv and argv[0] in SUBCOMMANDS:
        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    asks_help = "--help" in argv or "-h" in argv
    if asks_help:
        print(__doc__)  # the sub-commands; the config groups and keys follow
    try:
        check_override_keys(argv)
        if asks_help and (text := config_help([a for a in argv if a not in ("--help", "-h")])):
            print(text)
            return 0
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    sys.argv = [sys.argv[0], *argv]
    app_main()
    return 0


def config_help(overrides: list[str]) -> str | None:
    """Hydra's help page (its `hydra.help.template`: config groups, then the config composed with
    `overrides`) from one composition; Hydra's own --help re-reads the config repository once per group,
    seconds more. None when Hydra should answer: options besides overrides, or a template that asks for
    Hydra's flags or groups."""
    if any(arg.startswith("-") for arg in overrides):
        return None
    try:
        cfg = compose_config(overrides)
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(str(err)) from err
    template = str(cfg.hydra.help.template)
    if "$FLAGS_HELP" in template or "$HYDRA_CONFIG_GROUPS" in template:
        return None
    groups = []
    for folder in sorted(p for p in CONFIG_DIR.iterdir() if p.is_dir() and p.name != "hydra"):
        options = sorted(f.stem for f in folder.glob("*.yaml"))
        if options:
            groups.append(f"{folder.name}: {', '.join(options)}")
    config = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    return string.Template(template).safe_substitute(
        APP_CONFIG_GROUPS="\n".join(groups) + "\n", CONFIG=OmegaConf.to_yaml(config)
    )
