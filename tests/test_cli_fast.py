"""The command line answers before the heavy libraries load: help, config typos and bad values, an empty
report and a dataset check never import torch, Lightning or open_clip (checked in a fresh interpreter)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "lightning", "open_clip", "torchvision", "torchmetrics", "wandb", "matplotlib")

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
        (["methd=ft"], True, "methd"),
        (["setting.shots=-3"], True, "setting.shots"),
        (["setting.shots=abc"], True, "setting.shots"),
        (["report", "."], True, "no results records found"),
        (["regimes", "."], True, "no results records under ."),
        (["data", "check", "paths.data_dir=."], True, "dataset folder missing"),
    ],
    ids=["help", "commands", "typo", "bad-value", "bad-type", "empty-report", "empty-regimes", "data-check"],
)
def test_answers_without_heavy_imports(tmp_path, args, expect_error, message):
    result, output = _probe(*args, tmp_path=tmp_path)
    assert result["heavy"] == [], f"{args} imported {result['heavy']}"
    assert (result["code"] not in (0, None)) == expect_error, output
    assert message in output, output
