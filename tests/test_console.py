"""What a run prints: library notices filtered by message and module only, plain progress lines off a
terminal, one line per stage, the result table last."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import warnings

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar

from transmiter.callbacks import PlainProgress, progress_bar
from transmiter.console import LIBRARY_NOTICES, ConsoleFormatter, expected_random_init, quiet_library_notices

NOISE = (
    "Parsing model identifier",  # open_clip INFO on every model load
    "initialized randomly",
    "`srun` command is available",
    "LeafSpec",
    "predict returned None",
    "no `val_dataloader`",
    "Predicting ━",  # the last frame of a rich bar in a log file
    "Testing ━",
)


def test_each_library_notice_is_dropped_only_from_the_module_that_issues_it():
    quiet_library_notices()
    for message, module, _why in LIBRARY_NOTICES:
        text = message.replace("\\", "")
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("default")
            quiet_library_notices.__globals__["_installed"] = False  # re-install inside this context
            quiet_library_notices()
            issuer = module.replace("\\", "")
            warnings.warn_explicit(text, UserWarning, "x.py", 1, module=issuer, registry={})
            warnings.warn_explicit(text, UserWarning, "y.py", 1, module="someone.else", registry={})
            warnings.warn_explicit("another warning", UserWarning, "z.py", 1, module=issuer, registry={})
        assert [str(w.message) for w in seen] == [text, "another warning"], module


def test_open_clip_info_is_dropped_but_its_warnings_and_other_info_stay(caplog):
    quiet_library_notices()
    root = logging.getLogger()
    open_clip_file = os.path.join("site-packages", "open_clip", "factory.py")

    def emit(level, text, path):
        record = root.makeRecord("root", level, path, 1, text, (), None)
        root.handle(record)

    with caplog.at_level(logging.INFO):
        emit(logging.INFO, "Parsing model identifier", open_clip_file)
        emit(logging.WARNING, "checkpoint has unexpected keys", open_clip_file)
        emit(logging.INFO, "an INFO line of the project", "transmiter/job.py")
    assert [r.getMessage() for r in caplog.records] == [
        "checkpoint has unexpected keys",
        "an INFO line of the project",
    ]


def test_random_init_warning_dropped_only_while_random_init_was_asked(caplog):
    root = logging.getLogger()
    path = os.path.join("site-packages", "open_clip", "factory.py")
    text = "No pretrained weights loaded for model 'ViT-B-16'. Model initialized randomly."
    with caplog.at_level(logging.INFO):
        with expected_random_init():
            root.handle(root.makeRecord("root", logging.WARNING, path, 1, text, (), None))
        root.handle(root.makeRecord("root", logging.WARNING, path, 1, text, (), None))
    assert [r.getMessage() for r in caplog.records] == [text]


def test_console_formatter_keeps_the_level_of_warnings_only():
    fmt = ConsoleFormatter()
    info = logging.LogRecord("transmiter", logging.INFO, "f.py", 1, "stage ft: done", (), None)
    warn = logging.LogRecord("transmiter", logging.WARNING, "f.py", 1, "disk nearly full", (), None)
    assert fmt.format(info).split(" ", 1)[1] == "stage ft: done"
    assert fmt.format(warn).split(" ", 1)[1] == "WARNING disk nearly full"


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch[0]).pow(2).mean()
        self.log("loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(8, 2))
        return torch.utils.data.DataLoader(data, batch_size=2)


def _fit(callback) -> None:
    trainer = L.Trainer(
        max_epochs=2,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(_Tiny())


def test_plain_progress_prints_lines_at_its_interval_and_nothing_for_short_loops():
    every = io.StringIO()
    _fit(PlainProgress(every_s=0.0, stream=every))
    lines = every.getvalue().splitlines()
    assert len(lines) == 8  # 4 batches x 2 epochs
    assert lines[-1].startswith("_Tiny: train epoch 2/2, batch 4/4, loss ")
    quiet = io.StringIO()
    _fit(PlainProgress(every_s=3600.0, stream=quiet))
    assert quiet.getvalue() == ""


def test_progress_bar_is_live_on_a_terminal_and_plain_elsewhere():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress_bar(stream=Terminal()), RichProgressBar)
    assert isinstance(progress_bar(stream=io.StringIO()), PlainProgress)


def test_a_run_prints_stage_lines_and_its_table_and_no_library_noise(tmp_path):
    env = {
        **os.environ,
        "TRANSMITER_ROOT": str(tmp_path),
        "TRANSMITER_CACHE": str(tmp_path / "cache"),
        "TRANSMITER_RUN_DIR": str(tmp_path / "run"),
        "TRANSMITER_PROGRESS": "1",  # the progress callback is on, as for a user (output is a pipe)
    }

    def app(*args):
        proc = subprocess.run(
            [sys.executable, "-m", "transmiter", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    app("data", "fake", "dataset=smoke", "--classes", "4", "--per-class", "4,2,3")
    out = app("experiment=smoke", "method=ft")
    noise = [line for line in out.splitlines() if any(marker in line for marker in NOISE)]
    assert not noise, "\n".join(noise)
    lines = out.splitlines()
    assert any(line.split(" ", 1)[-1].startswith("stage ft tm-tiny-ViT@") for line in lines), out
    header = next(i for i, line in enumerate(lines) if line.endswith("Smoke | base2novel | seed 1"))
    assert lines[header + 1].split() == ["row", "base", "novel", "hm"]
    assert lines[header + 2].lstrip().startswith("FT ")
    assert len(lines) == header + 3, out  # the table is the last thing printed
    # run again: the stage is reused, said in one line instead of a line per stage
    again = app("experiment=smoke", "method=ft", "skip_done=false")
    assert " stage ft " not in again, again
    assert "1 stage(s) reused from the cache (ft x1; they ran " in again, again
