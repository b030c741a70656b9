"""The command line answers before the heavy libraries load: help, config typos and bad values, an empty
report, a dataset check and the list of synthetic worlds never import torch, Lightning, open_clip or what
Lightning pulls in (checked in a fresh interpreter by what it loaded, not by timing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = (
    "torch",
    "lightning",
    "open_clip",
    "torchvision",
    "torchmetrics",
    "wandb",
    "matplotlib",
    "scipy",
    "sympy",
)

# runs the command in a fresh interpreter, then reports its exit code and which heavy packages it loaded
_PROBE = """
import json, sys
from transmiter.cli import main
code = 0
try:
    code = main(sys.argv[1:]) or 0
except SystemExit as exit:
    code = exit.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY_MODULES))
print("PROBE " + json.dumps({"code": code, "heavy": heavy}))
""".replace("HEAVY_MODULES", repr(HEAVY))


def _probe(*args: str, tmp_path) -> tuple[dict, str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "HYDRA_FULL_ERROR": "0"},
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("PROBE ")]
    assert line, proc.stdout + proc.stderr
    return json.loads(line[-1][len("PROBE ") :]), proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("args", "expect_error", "message"),
    [
        (["--help"], False, "== Config =="),
        (["help"], False, "transmiter data check"),
        (["--help", "seed=7"], False, "seed: 7"),
        (["dataset=nosuch", "--help"], True, "dataset/nosuch"),
        (["methd=ft"], True, "methd"),
        (["dataset=nosuch"], True, "dataset/nosuch"),
        (["trainer.max_epoch=3"], True, "trainer.max_epoch"),
        (["setting.shots=-3"], True, "setting.shots"),
        (["setting.shots=abc"], True, "setting.shots"),
        (["report", "."], True, "no results records found"),
        (["regimes", "."], True, "no results records under ."),
        (["data", "check", "paths.data_dir=."], True, "dataset folder missing"),
        (["world", "list"], False, "domain_shift"),
    ],
    ids=[
        "help",
        "commands",
        "help-with-override",
        "help-with-typo",
        "typo",
        "unknown-option",
        "unknown-nested-key",
        "bad-value",
        "bad-type",
        "empty-report",
        "empty-regimes",
        "data-check-missing",
        "world-list",
    ],
)
def test_answers_without_heavy_imports(tmp_path, args, expect_error, message):
    result, output = _probe(*args, tmp_path=tmp_path)
    assert result["heavy"] == [], f"{args} imported {result['heavy']}"
    assert (result["code"] not in (0, None)) == expect_error, output
    assert message in output, output


def test_checking_a_present_dataset_answers_without_heavy_imports(tmp_path):
    """The whole `data check` of a dataset that is there (its split file read, every image listed)."""
    wrote, output = _probe("data", "fake", "dataset=smoke", f"paths.data_dir={tmp_path}", tmp_path=tmp_path)
    assert wrote["code"] in (0, None), output
    result, output = _probe("data", "check", "dataset=smoke", f"paths.data_dir={tmp_path}", tmp_path=tmp_path)
    assert result["heavy"] == [], f"data check imported {result['heavy']}"
    assert result["code"] in (0, None), output
    assert "[ok] Smoke" in output, output


def test_help_lists_every_config_group_and_its_options(tmp_path):
    """--help names each config group (a folder of conf/) with its options, the YAML files, and not the
    schemas the method files start from."""
    from transmiter.config.compose import CONFIG_DIR

    result, output = _probe("--help", tmp_path=tmp_path)
    assert result["code"] in (0, None), output
    for folder in CONFIG_DIR.iterdir():
        options = sorted(f.stem for f in folder.glob("*.yaml"))
        if folder.is_dir() and folder.name != "hydra" and options:
            assert f"{folder.name}: {', '.join(options)}\n" in output, folder.name
    assert "_schema" not in output
