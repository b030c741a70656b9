"""Finished stages heal (issue 19, item 1): reusing a stage checks the size and hash of every output it
recorded; a damaged output makes the stage unfinished, a warning names the file and the stage is recomputed
to the same result. Outputs a consumer still cannot read name the stage folder to delete, never a config key
the user did not set."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from tests.toys import write_fake_data
from transmiter.app import run
from transmiter.stages import DONE_FILE, StageStore


def _flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


# ----------------------------------------------------------------------------------------- the store


def _work(calls: list):
    def fn(folder: Path) -> dict:
        calls.append(folder)
        (folder / "weights.bin").write_bytes(bytes(range(256)) * 8)
        (folder / "sub").mkdir(exist_ok=True)
        (folder / "sub" / "table.json").write_text('{"a": 1}')
        (folder / "checkpoints").mkdir(exist_ok=True)
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"resume state")
        return {"value": 7}

    return fn


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda f: _flip_byte(f / "weights.bin"), "weights.bin does not match the hash"),
        (lambda f: _truncate(f / "weights.bin"), "weights.bin has 1024 bytes, 2048 when the stage finished"),
        (lambda f: (f / "sub" / "table.json").unlink(), "table.json is missing"),
        (lambda f: (f / "sub" / "table.json").write_text('{"a": 2}'), "table.json does not match"),
    ],
    ids=["flipped-byte", "truncated", "deleted", "rewritten"],
)
def test_a_damaged_output_makes_the_stage_run_again(tmp_path, caplog, damage, says):
    store, calls = StageStore(tmp_path / "stages"), []
    first = store.run("demo", {"x": 1}, _work(calls))
    record = json.loads((first.path / DONE_FILE).read_text())
    assert set(record["files"]) == {"weights.bin", "sub/table.json"}  # checkpoints and bookkeeping aside
    assert store.run("demo", {"x": 1}, _work(calls)).reused and len(calls) == 1

    damage(first.path)
    if "does not match" not in says:  # dry runs check sizes only
        assert not store.is_done("demo", {"x": 1})
    with caplog.at_level(logging.WARNING, logger="transmiter"):
        again = store.run("demo", {"x": 1}, _work(calls))
    assert not again.reused and len(calls) == 2 and again.outputs == {"value": 7}
    warned = [r.getMessage() for r in caplog.records if "recomputed" in r.getMessage()]
    assert len(warned) == 1 and says in warned[0] and str(first.path) in warned[0], warned
    assert (first.path / "weights.bin").read_bytes() == bytes(range(256)) * 8  # healed
    assert store.run("demo", {"x": 1}, _work(calls)).reused and len(calls) == 2


def test_healing_starts_from_scratch_not_from_stale_checkpoints(tmp_path):
    store, calls = StageStore(tmp_path / "stages"), []
    first = store.run("demo", {"x": 1}, _work(calls))
    (first.path / "checkpoints" / "stale").write_text("from the damaged run")
    _flip_byte(first.path / "weights.bin")
    store.run("demo", {"x": 1}, _work(calls))
    assert not (first.path / "checkpoints" / "stale").exists() and (first.path / ".lock").exists()


def test_records_from_before_output_hashes_are_still_reused(tmp_path):
    store, calls = StageStore(tmp_path / "stages"), []
    first = store.run("demo", {"x": 1}, _work(calls))
    record = json.loads((first.path / DONE_FILE).read_text())
    del record["files"]
    (first.path / DONE_FILE).write_text(json.dumps(record))
    assert store.run("demo", {"x": 1}, _work(calls)).reused and len(calls) == 1


# ------------------------------------------------------------------------------------ real stages

TRANSFER = [
    "experiment=smoke",
    "pair=tiny_random",
    "method=transmiter_plus",
    "method@method.source_finetune=ft",
    "method.source_finetune.module.epochs=1",
    "method.K=64",
    "method.views=1",
    "method.fit.epochs=1",
    "method.refine.epochs=1",
    "skip_done=false",
]


def _stage_folders(out: Path) -> dict[str, Path]:
    ledger = json.loads((out / "stages.json").read_text())
    return {entry["name"]: Path(entry["path"]) for entry in ledger.values()}


def _finished_at(stage_dir: Path) -> int:
    """When the stage's record was (re)written: only a recomputed stage writes it again."""
    return (stage_dir / DONE_FILE).stat().st_mtime_ns


def _content(file: Path):
    """What a file holds apart from when it was written: the tensors of a .safetensors file (its header
    map has no fixed order, and an adapter's metadata its creation time), the JSON of a sidecar without
    its `created_at` and the hash that covers it."""
    if file.suffix == ".json":
        return {k: v for k, v in json.loads(file.read_text()).items() if k not in ("created_at", "sha256")}
    from safetensors import safe_open

    with safe_open(str(file), framework="pt") as f:
        return {k: f.get_tensor(k).tolist() for k in f.keys()}


def test_every_kind_of_stage_output_heals_to_the_same_metrics(compose, tmp_path, caplog):
    """FT weights truncated; the fitted, transferred and refined adapters with a flipped byte; an adapter's
    JSON sidecar rewritten: each re-run recomputes exactly the damaged stage (the others' records are not
    rewritten) and gives the same metrics."""
    out = tmp_path / "run"
    cfg = compose([*TRANSFER, f"paths.output_dir={out}"])
    write_fake_data(cfg)
    metrics = run(cfg)
    stages = _stage_folders(out)
    assert set(stages) == {"ft", "adapter_fit", "adapter_transfer", "adapter_refine"}
    damages = [
        ("ft", "model.safetensors", _truncate),
        ("adapter_fit", "adapter.safetensors", _flip_byte),
        ("adapter_transfer", "adapter.safetensors", _flip_byte),
        ("adapter_refine", "adapter.safetensors", _flip_byte),
        ("adapter_transfer", "adapter.json", lambda p: p.write_text(p.read_text().replace("{", "{ ", 1))),
    ]
    finished = {s: _finished_at(folder) for s, folder in stages.items()}
    for stage, name, damage in damages:
        file = stages[stage] / name
        healthy = _content(file)
        damage(file)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="transmiter"):
            assert run(cfg) == metrics, f"{stage}/{name}"
        warned = [r.getMessage() for r in caplog.records if "the stage is recomputed" in r.getMessage()]
        assert len(warned) == 1 and str(file) in warned[0], (stage, warned)
        assert _content(file) == healthy, f"{stage}/{name} not healed"
        assert [s for s, folder in stages.items() if _finished_at(folder) != finished[s]] == [stage]
        finished = {s: _finished_at(folder) for s, folder in stages.items()}


def test_skip_tuning_weights_heal(compose, tmp_path, caplog):
    out = tmp_path / "run"
    cfg = compose(
        [
            "experiment=smoke",
            "method=skip_tuning",
            "method.module.epochs=1",
            "skip_done=false",
            f"paths.output_dir={out}",
        ]
    )
    write_fake_data(cfg)
    metrics = run(cfg)
    file = _stage_folders(out)["skip_tuning"] / "model.safetensors"
    healthy = _content(file)
    # inside the tensors, past the header: safetensors itself reads such a file without complaint
    _flip_byte(file, offset=file.stat().st_size - 10)
    with caplog.at_level(logging.WARNING, logger="transmiter"):
        assert run(cfg) == metrics
    warned = [r.getMessage() for r in caplog.records if "the stage is recomputed" in r.getMessage()]
    assert len(warned) == 1 and str(file) in warned[0], warned
    assert _content(file) == healthy  # trained again to the same weights


def _forget_output_hashes(stage_dir: Path) -> None:
    """A stage finished before outputs were recorded (or damaged after they were checked)."""
    record = json.loads((stage_dir / DONE_FILE).read_text())
    del record["files"]
    (stage_dir / DONE_FILE).write_text(json.dumps(record))


@pytest.mark.parametrize(
    ("stage", "name"), [("ft", "model.safetensors"), ("adapter_transfer", "adapter.safetensors")]
)
def test_an_unreadable_output_names_the_stage_folder_not_a_config_key(compose, tmp_path, stage, name):
    out = tmp_path / "run"
    transmiter = [o for o in TRANSFER if not o.startswith(("method=", "method.refine"))]
    cfg = compose([*transmiter, "method=transmiter", f"paths.output_dir={out}"])
    write_fake_data(cfg)
    run(cfg)
    folder = _stage_folders(out)[stage]
    _forget_output_hashes(folder)
    _truncate(folder / name) if name == "model.safetensors" else _flip_byte(folder / name)
    from transmiter.stages import StageOutputError

    with pytest.raises(StageOutputError) as err:
        run(cfg)
    message = str(err.value)
    assert str(folder / name) in message and f"rm -r '{folder}'" in message, message
    assert "model.pretrained" not in message and "re-running the stage" not in message, message
