"""What a run prints: library notices a user cannot act on are dropped, precisely, by message and module.

    quiet_library_notices()             # once per process (idempotent): warnings filters + open_clip's INFO
    with expected_random_init(): ...    # open_clip's "no pretrained weights" warning, when random init was asked
    formatter = ConsoleFormatter()      # "HH:MM:SS message" (warnings and errors keep their level)

Every filter names the message and the module that issues it, so the same text from anywhere else, and
every other warning of these libraries, still reaches the user. Nothing here imports torch or Lightning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator

# (message regex, module regex, why the user cannot act on it)
LIBRARY_NOTICES: tuple[tuple[str, str, str], ...] = (
    (
        r"The `srun` command is available on your system but is not used",
        r"lightning\.fabric\.plugins\.environments\.slurm",
        "a SLURM install on the machine does not make a local run a SLURM job",
    ),
    (
        r"`isinstance\(treespec, LeafSpec\)` is deprecated",
        r"lightning\.pytorch\.utilities\._pytree",
        "Lightning's own use of a deprecated torch API",
    ),
    (
        r"predict returned None",
        r"lightning\.pytorch\.loops\.prediction_loop",
        "feature passes collect their outputs in the module and return None on purpose",
    ),
    (
        r"You defined a `validation_step` but have no `val_dataloader`",
        r"lightning\.pytorch\.trainer\.configuration_validator",
        "validation is optional for a stage; the protocol selects nothing on it by default",
    ),
    (
        r"Your `IterableDataset` has `__len__` defined",
        r"lightning\.pytorch\.utilities\.data",
        "the synthetic streams are consumed in the main process, so their length is exact",
    ),
)

# open_clip logs through the root logger; its INFO lines narrate every model load
_OPEN_CLIP_DIR = f"{os.sep}open_clip{os.sep}"
_installed = False


class _OpenClipInfoFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno < logging.WARNING and _OPEN_CLIP_DIR in (record.pathname or ""))


class _RandomInitWarningFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            _OPEN_CLIP_DIR in (record.pathname or "")
            and record.getMessage().startswith("No pretrained weights loaded for model")
        )


def quiet_lightning_banners() -> None:
    """Lightning prints device banners and tips on every Trainer, and a run builds several; warnings stay."""
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)


def quiet_library_notices() -> None:
    """Install the filters above in this process (spawned DDP workers call it again through their trainer)."""
    global _installed
    quiet_lightning_banners()
    if _installed:
        return
    for message, module, _why in LIBRARY_NOTICES:
        warnings.filterwarnings("ignore", message=message, module=module)
    logging.getLogger().addFilter(_OpenClipInfoFilter())
    _installed = True


@contextlib.contextmanager
def expected_random_init() -> Iterator[None]:
    """Drop open_clip's "initialized randomly" warning while a model is built with pretrained=None on purpose
    (the row says "random init" instead); a failed load of requested weights still warns."""
    root = logging.getLogger()
    flt = _RandomInitWarningFilter()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS message` for INFO, `HH:MM:SS WARNING message` above it: the console a person reads (the
    job's log file keeps the full format with logger names)."""

    def __init__(self) -> None:
        super().__init__(datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        time = self.formatTime(record, self.datefmt)
        level = "" if record.levelno <= logging.INFO else f"{record.levelname} "
        text = f"{time} {level}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text
