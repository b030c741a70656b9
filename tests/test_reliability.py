"""Reliability (issue 7): bad input fails with a message naming the path or key and the fix; killed runs
resume to the same result; caches survive concurrent and interrupted writes; sweeps lose nothing.

Bad-input cases (issue 7, item 1). Cases tested in other files are listed here, not repeated; the rest are
tested below (marked "here").

| # | case | test |
|---|------|------|
| 1 | dataset folder missing | test_data_check.py::test_missing_root, test_configs.py::test_missing_dataset_folder_names_path_and_fix |
| 2 | partial folder: split file missing | test_data_check.py::test_missing_split_file_says_download_never_regenerate, test_configs.py::test_missing_split_file_names_it |
| 3 | partial folder: class folders missing | test_data_check.py::test_missing_class_folder, test_data_check.py::test_missing_class_folder_of_a_json_dataset |
| 4 | partial folder: metadata files missing | test_data_check.py::test_missing_metadata_files_are_listed_together |
| 5 | split file malformed | test_data_check.py::test_malformed_split_file |
| 6 | split file refers to missing images | test_data_check.py::test_split_refers_to_missing_image |
| 7 | image deleted after the split was loaded | test_data_check.py::test_image_deleted_after_loading |
| 8 | corrupt / truncated / non-image file (error, file path named) | test_data_check.py::test_corrupt_image_names_the_file; in a run, naming the skip option: here |
| 9 | corrupt images with the opt-in skip policy (skipped, counted, recorded) | here |
| 10 | shots larger than available, strict | test_data_fewshot.py::test_strict_names_class_and_counts |
| 11 | shots larger than available, protocol rule (kept, warned) | here |
| 12 | unknown model architecture | test_models.py::test_unknown_architecture_suggests_close_names |
| 13 | unknown pretrained tag | test_models.py::test_unknown_tag_lists_known_tags |
| 14 | model checkpoint file missing | test_models.py::test_missing_checkpoint_path_names_it |
| 15 | model checkpoint empty / not a checkpoint / truncated zip | test_models.py::test_corrupt_checkpoint_gives_a_clear_error |
| 16 | model checkpoint truncated safetensors | test_models.py::test_truncated_safetensors_gives_a_clear_error |
| 17 | resume checkpoint (last.ckpt) truncated or garbage | here |
| 18 | resume checkpoint that is a torch file but not a training checkpoint | here |
| 19 | resume checkpoint carrying pickled code (refused, never run) | here |
| 20 | adapter artifact from another dataset / class list / class order / auxiliary list / K / stage / model | test_transfer_artifact.py::test_mismatch_refusals_name_field_values_and_fix, test_order_mismatch_message_points_at_index |
| 21 | adapter artifact truncated, foreign or with flipped bytes | test_transfer_artifact.py::test_truncated_or_foreign_file_detected, test_corrupted_tensor_bytes_detected |
| 22 | target logits whose count does not fit the adapter's K | test_transfer_adapter.py::test_wrong_k_and_proj_dim_errors |
| 23 | target logits not paired with the source's (rows / K) in the transfer | test_transfer_transfer.py::test_batches_argument_equals_tensors |
| 24 | non-finite loss (FT, Skip Tuning): training stops, last good checkpoint kept | test_finetune_module.py::test_non_finite_loss_stops_training_and_keeps_last_good_checkpoint, test_skip_tuning.py::test_non_finite_loss_error |
| 25 | non-finite logits (adapter fitting) | test_transfer_fit.py::test_non_finite_logits_stop_fitting_and_name_the_checkpoint |
| 26 | non-finite loss in a stage: the message says where the last good checkpoint is | here |
| 27 | negative / zero shots, negative seed, unknown arch or tag in the config | test_configs.py::test_invalid_values_fail_before_heavy_work |
| 28 | lambda < 0 (config) | here |
| 29 | K <= C (config; the library call: test_transfer_vocabulary.py::test_c_ge_k_raises_with_fix_and_grow_k) | here |
| 30 | omega / text_omega beyond the tower depth (config; module level: test_skip_tuning.py::test_clear_errors) | here |
| 31 | invalid dataset.on_corrupt_image | here |
| 32 | loading never unpickles code (static scan of src/ + open_clip's loader observed) | here |

32 cases: 20 tested only elsewhere (rows 1-7, 10, 12-16, 20-25, 27), 11 only here, row 8 in both.
Resume (item 2), caches (item 2/3) and sweeps (item 3) follow at the end; the kill tests are `slow`.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from transmiter.app import run
from transmiter.config import ConfigError, validate_config
from transmiter.config.instantiate import dataset_spec_from_config
from transmiter.context import RunContext
from transmiter.data.dataset import drop_unreadable_images
from transmiter.data.errors import DatasetError
from transmiter.data.fake import write_fake_dataset
from transmiter.features.store import ArrayCache
from transmiter.methods.resume import CheckpointError, fit_resumable, resume_checkpoint
from transmiter.reporting.records import load_records

SRC = Path(__file__).resolve().parents[1] / "src"


def _fake(cfg, classes=6, per_class=(4, 2, 3)):
    write_fake_dataset(
        dataset_spec_from_config(cfg.dataset), cfg.paths.data_dir, num_classes=classes, per_class=per_class
    )


def _corrupt(path: str) -> None:
    Path(path).write_bytes(Path(path).read_bytes()[:40])  # a JPEG/PNG cut short


# ---------------------------------------------------------------------------------------- corrupt images


def test_corrupt_image_in_a_run_names_the_file_and_the_skip_option(compose, tmp_path):
    cfg = compose(["experiment=smoke", f"paths.output_dir={tmp_path}/run"])
    _fake(cfg)
    bad = RunContext.from_config(cfg).splits("new").test[1].impath
    _corrupt(bad)
    with pytest.raises(DatasetError) as err:
        run(cfg)
    message = str(err.value)
    assert bad in message and "download / extract it again" in message
    assert "dataset.on_corrupt_image=skip" in message


def test_skip_policy_leaves_corrupt_images_out_counts_and_records_them(compose, tmp_path, caplog):
    cfg = compose(["experiment=smoke", "dataset.on_corrupt_image=skip", f"paths.output_dir={tmp_path}/run"])
    _fake(cfg)
    full = RunContext.from_config(compose(["experiment=smoke", f"paths.output_dir={tmp_path}/x"]))
    bad = [
        full.splits("base").test[0].impath,
        full.splits("new").test[2].impath,
        full.splits("base").train[3].impath,
    ]
    for path in bad:
        _corrupt(path)
    with caplog.at_level(logging.WARNING, logger="transmiter"):
        metrics = run(cfg)
    assert set(metrics) == {"base", "novel", "hm"}
    (record,) = load_records([tmp_path / "run"])
    assert sorted(record["skipped_images"]) == sorted(bad)  # listed, with the reason
    assert all("Error" in reason for reason in record["skipped_images"].values())
    warned = " ".join(r.getMessage() for r in caplog.records if "on_corrupt_image=skip" in r.getMessage())
    assert all(path in warned for path in bad)
    # the splits the run used hold none of them, and their identity differs from the intact data's
    ctx = RunContext.from_config(cfg)
    used = [
        d.impath
        for s in ("base", "new")
        for part in ("train", "val", "test")
        for d in getattr(ctx.splits(s), part)
    ]
    assert not set(bad) & set(used)
    assert record["splits"]["base"] != _split_ids(full)["base"]


def _split_ids(ctx):
    from transmiter.data.datum import split_identity

    return {group: split_identity(ctx.splits(group)) for group in ("base", "new")}


def test_skip_scan_is_deterministic_and_decodes_each_file_once(tmp_path, monkeypatch):
    """The design that keeps DDP batches consistent: every rank scans the same files up front and gets the
    same verdicts; the base / novel / all splits of a run share one decode per file."""
    import transmiter.data.dataset as dataset_mod
    from transmiter.config.instantiate import shipped_dataset_spec
    from transmiter.data.loaders import load_dataset

    spec = write_fake_dataset(shipped_dataset_spec("DescribableTextures"), tmp_path, num_classes=3)
    splits = load_dataset(spec, tmp_path)
    _corrupt(splits.train[1].impath)
    reads = []
    real = dataset_mod.read_image
    monkeypatch.setattr(dataset_mod, "read_image", lambda p: reads.append(p) or real(p))
    known: dict = {}
    kept, dropped = drop_unreadable_images(splits, known=known)
    assert list(dropped) == [splits.train[1].impath]
    assert len(kept.train) == len(splits.train) - 1 and kept.test == splits.test
    n = len(reads)
    again, dropped_again = drop_unreadable_images(splits, known=known)
    assert (
        len(reads) == n and dropped_again == dropped and again.train == kept.train
    )  # no decode, same result
    assert drop_unreadable_images(splits)[1] == dropped  # a fresh scan (another rank) agrees


# ---------------------------------------------------------------------------------------- config values


@pytest.mark.parametrize(
    ("overrides", "key", "fix"),
    [
        (["dataset.on_corrupt_image=ignore"], "dataset.on_corrupt_image", "use error"),
        (["method=transmiter", "method.lam=-1"], "method.lam", ">= 0"),
        (["method=transmiter_plus", "method.lam=-0.5"], "method.lam", ">= 0"),
        (["method=transmiter", "dataset=oxford_pets", "method.K=37"], "method.K", "grow_k=true"),
        (["method=eft", "dataset=dtd", "method.K=20"], "method.K", "raise method.K"),
        (
            ["method=study", "dataset=dtd", "method.methods.transmiter_plus.K=47"],
            "method.methods.transmiter_plus.K",
            "grow_k",
        ),
        (["method=skip_tuning", "method.module.omega=3"], "method.module.omega", "0 <= omega <= 1"),
        (["method=skip_tuning", "method.module.omega=-1"], "method.module.omega", "0 <= omega <= 1"),
        (
            ["method=transmiter", "method.source_finetune.module.text_omega=5"],
            "method.source_finetune.module.text_omega",
            "0 <= text_omega <= 1",
        ),
        (
            ["method=study", "method.methods.skip_tuning.module.omega=4"],
            "method.methods.skip_tuning.module.omega",
            "pair.source",
        ),
    ],
)
def test_invalid_method_and_dataset_values_fail_before_heavy_work(compose, overrides, key, fix):
    cfg = compose(["model=tiny_random", "pair=tiny_random", *overrides])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, check_data=False)
    message = str(err.value)
    assert message.startswith(f"{key}=") and fix in message


def test_valid_values_pass(compose):
    for overrides in (
        ["method=study", "dataset=dtd"],
        ["method=eft", "dataset=oxford_pets", "method.K=37", "method.grow_k=true"],
        ["method=skip_tuning", "method.module.omega=1"],
        ["method=transmiter", "method.lam=0"],
        ["dataset.on_corrupt_image=skip"],
    ):
        validate_config(compose(["model=tiny_random", "pair=tiny_random", *overrides]), check_data=False)


# ---------------------------------------------------------------------------------------- shots


def test_shots_beyond_a_small_class_keep_everything_and_warn(tmp_path, caplog):
    from transmiter.config.instantiate import shipped_dataset_spec
    from transmiter.data.fewshot import sample_few_shot
    from transmiter.data.loaders import load_dataset

    spec = write_fake_dataset(shipped_dataset_spec("EuroSAT"), tmp_path, num_classes=3, per_class=(3, 5, 1))
    full = load_dataset(spec, tmp_path)
    with caplog.at_level(logging.WARNING):
        few = sample_few_shot(full, 8, seed=1, cache=False)
    assert len(few.train) == len(full.train)  # the protocol keeps every image of a small class
    message = caplog.text
    assert "shots=8" in message and "has 3 train image(s), 8 requested" in message
    assert "setting.shots" in message and "strict=True" in message


# ---------------------------------------------------------------------------------------- checkpoints


def _stage_with(tmp_path, content: bytes | None = None, obj=None) -> Path:
    ckpt = tmp_path / "stage" / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    if obj is not None:
        torch.save(obj, ckpt)
    else:
        ckpt.write_bytes(content or b"")
    return ckpt


@pytest.mark.parametrize("content", [b"", b"garbage, not a checkpoint", b"PK\x03\x04 cut-off zip"])
def test_damaged_resume_checkpoint_names_file_and_fix(tmp_path, content):
    ckpt = _stage_with(tmp_path, content)
    with pytest.raises(CheckpointError) as err:
        resume_checkpoint(tmp_path / "stage")
    message = str(err.value)
    assert str(ckpt) in message and f"rm {ckpt}" in message and "restart this training stage" in message


def test_truncated_lightning_checkpoint_is_refused(tmp_path):
    ckpt = _stage_with(
        tmp_path, obj={"state_dict": {"w": torch.ones(1000)}, "optimizer_states": [], "loops": {}}
    )
    assert resume_checkpoint(tmp_path / "stage") == ckpt  # intact: used
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged or not a checkpoint"):
        resume_checkpoint(tmp_path / "stage")


def test_foreign_torch_file_is_not_a_resume_checkpoint(tmp_path):
    ckpt = _stage_with(tmp_path, obj={"weights": torch.zeros(3)})
    with pytest.raises(CheckpointError) as err:
        resume_checkpoint(tmp_path / "stage")
    assert "not a Lightning training checkpoint" in str(err.value) and str(ckpt) in str(err.value)


class _Payload:
    """Unpickling this would create the marker file: what a malicious checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_with_pickled_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "code-was-executed"
    _stage_with(tmp_path, obj={"state_dict": {}, "optimizer_states": [], "loops": {}, "x": _Payload(marker)})
    with pytest.raises(CheckpointError, match="damaged or not a checkpoint"):
        resume_checkpoint(tmp_path / "stage")
    assert not marker.exists()


class _Ctx:
    """What fit_resumable needs from a RunContext."""

    def make_trainer(self, purpose, **kwargs):
        from omegaconf import OmegaConf

        from transmiter.trainers import build_trainer

        options = dict(accelerator="cpu", devices=1, enable_progress_bar=False, enable_model_summary=False)
        cfg = OmegaConf.create({"_target_": "lightning.pytorch.Trainer", **options})
        return build_trainer(cfg, purpose=purpose, **kwargs)  # the shipped conf/callbacks

    def training_logger(self, purpose):
        return False


def test_non_finite_loss_in_a_stage_names_the_last_good_checkpoint(tmp_path):
    import lightning as L

    from transmiter.callbacks import NonFiniteLossError
    from transmiter.methods.adapter_fit import AdapterFitModule
    from transmiter.transfer.logit_data import LogitPairDataModule

    class Poison(L.Callback):
        def on_train_epoch_start(self, trainer, pl_module):
            if trainer.current_epoch == 1:
                with torch.no_grad():
                    for p in pl_module.adapter.blocks.parameters():
                        p.fill_(float("nan"))

    torch.manual_seed(0)
    dm = LogitPairDataModule(train=(torch.randn(32, 16), torch.randn(32, 4)), batch_size=16, seed=0)
    stage = tmp_path / "stage"
    with pytest.raises(NonFiniteLossError) as err:
        fit_resumable(
            _Ctx(),
            AdapterFitModule(K=16, seed=0),
            dm,
            epochs=3,
            stage_dir=stage,
            purpose="fit",
            callbacks=[Poison()],
        )
    last = stage / "checkpoints" / "last.ckpt"
    message = str(err.value)
    assert f"the last good checkpoint is {last}" in message and "lower" in message
    state = torch.load(last, weights_only=True)
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["state_dict"].values())


# ---------------------------------------------------------------------------------------- safe loading

_FORBIDDEN = {("pickle", "load"), ("pickle", "loads"), ("jit", "load"), ("dill", "load"), ("joblib", "load")}


def _keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords
    )


def test_no_loader_in_src_can_unpickle_code():
    """Every torch.load passes weights_only=True, np.load allow_pickle=False, every Lightning resume or
    load_from_checkpoint weights_only=True; pickle / torch.jit / dill / joblib loading is not used at all."""
    seen, unsafe = [], []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            attr = node.func.attr
            owner = node.func.value
            owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
            where = f"{path.relative_to(SRC)}:{node.lineno}"
            if (owner_name, attr) in _FORBIDDEN:
                unsafe.append(f"{where} {owner_name}.{attr}")
            elif owner_name == "torch" and attr == "load":
                seen.append(where)
                if not _keyword_is(node, "weights_only", True):
                    unsafe.append(f"{where} torch.load without weights_only=True")
            elif owner_name in ("np", "numpy") and attr == "load":
                seen.append(where)
                if not _keyword_is(node, "allow_pickle", False):
                    unsafe.append(f"{where} np.load without allow_pickle=False")
            elif (
                attr == "fit" and any(k.arg == "ckpt_path" for k in node.keywords)
            ) or attr == "load_from_checkpoint":
                seen.append(where)
                if not _keyword_is(node, "weights_only", True):
                    unsafe.append(f"{where} {attr} without weights_only=True")
    assert not unsafe, unsafe
    # the scan does find the loaders (resume checkpoints, the resumed fit, the feature cache)
    assert {w.split(":")[0] for w in seen} >= {"transmiter/methods/resume.py", "transmiter/features/store.py"}


def test_open_clip_checkpoints_are_loaded_weights_only(tmp_path, monkeypatch):
    """Local .pt checkpoints go through open_clip's loader: every torch.load it makes is weights-only."""
    from transmiter.models.clip import ModelSpec, load_clip

    bundle = load_clip(ModelSpec(arch="tm-tiny-ViT"))
    path = tmp_path / "tiny.pt"
    torch.save(bundle.model.state_dict(), path)
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k.get("weights_only")) or real(*a, **k))
    load_clip(ModelSpec(arch="tm-tiny-ViT", pretrained=str(path)))
    assert calls and all(w is True for w in calls)


# ---------------------------------------------------------------------------------------- caches


# A writer process: saves the same entry over and over while reading it back, and prints how many reads
# saw the whole entry. A "damaged entry" warning is an error: it would mean a reader met a partial write.
_HAMMER = """
import sys, warnings
import numpy as np
from transmiter.features.store import ArrayCache
warnings.simplefilter("error")
root, key, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
cache = ArrayCache(root)
expected = np.arange(50_000, dtype=np.float32).reshape(500, 100)
good = 0
for _ in range(rounds):
    cache.save(key, {"features": expected, "labels": np.arange(500)}, meta={"n": 500})
    hit = cache.load(key)
    if hit is not None:
        assert np.array_equal(hit["features"], expected) and hit.meta == {"n": 500}
        good += 1
print(good)
"""


def test_concurrent_writers_of_one_cache_entry_never_expose_a_partial_one(tmp_path):
    cache = ArrayCache(tmp_path / "features")
    key = cache.key({"model": "m@1", "split": "test"})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _HAMMER, str(cache.root), key, "20"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-2000:] for _, err in outputs]
    assert [int(out) for out, _ in outputs] == [20] * 4  # every read after a save saw the whole entry
    entry = cache.load(key)
    assert entry is not None and entry["features"].shape == (500, 100)
    leftovers = [p.name for p in cache.path(key).parent.iterdir() if p.name != key]
    assert leftovers == []  # no temporary folders left behind


def test_interrupted_cache_writes_are_never_taken_for_complete_entries(tmp_path):
    cache = ArrayCache(tmp_path)
    key = cache.key({"k": "interrupted"})
    final = cache.path(key)
    # 1. killed before the rename: only a temporary folder exists
    tmp = final.parent / f".{key}.tmp-killed"
    tmp.mkdir(parents=True)
    np.save(tmp / "features.npy", np.ones(10))
    assert cache.load(key) is None and not cache.exists(key)
    # 2. a folder in place without its meta.json (e.g. killed while a damaged entry was being removed)
    final.mkdir()
    np.save(final / "features.npy", np.ones(10))
    assert cache.load(key) is None and not cache.exists(key)
    cache.save(key, {"features": np.full(10, 2.0)})  # the stale folder is replaced
    np.testing.assert_array_equal(cache.load(key)["features"], np.full(10, 2.0))
    # 3. a file cut short after publication: its size no longer matches meta.json
    npy = final / "features.npy"
    npy.write_bytes(npy.read_bytes()[:-8])
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert cache.load(key) is None


# ---------------------------------------------------------------------------------------- kill and resume


def _cli(args, root: Path, data: Path, **env) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k != "TRANSMITER_FAULT_KILL"}
    full.update(
        TRANSMITER_ROOT=str(root),
        TRANSMITER_DATA=str(data),
        TRANSMITER_PROGRESS="0",
        WANDB_MODE="disabled",
        **env,
    )
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "transmiter", *args],
        capture_output=True,
        text=True,
        env=full,
        cwd=root,
        timeout=1200,
    )


def _stage(root: Path, name: str) -> Path:
    (path,) = (root / ".cache" / "transmiter" / "stages" / name).iterdir()
    return path


def _tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
def test_killed_finetuning_and_fitting_resume_to_the_uninterrupted_result(compose, tmp_path):
    """SIGKILL mid-epoch in fine-tuning, then mid-epoch in adapter fitting; the same command run again
    resumes each from its last checkpoint and ends with the weights and metrics of an uninterrupted run."""
    data = tmp_path / "data"
    _fake(compose(["experiment=smoke", f"paths.data_dir={data}"]))
    # 12 training images (3 base classes x 4 shots): 3 FT steps per epoch (batch 4), and 24 fitting rows
    # (2 views): 3 fitting steps per epoch (batch 8). Step 4 is the 1st step of the 2nd epoch.
    command = [
        "experiment=smoke",
        "method=transmiter",
        "pair=tiny_random",
        "method@method.source_finetune=ft",
        "method.source_finetune.module.epochs=3",
        "method.K=64",
        "method.views=2",
        "method.fit.epochs=3",
        "method.fit.batch_size=8",
        "hydra.run.dir=outputs/run",
    ]
    reference = _cli(command, tmp_path / "reference", data)
    assert reference.returncode == 0, reference.stderr[-3000:]

    root = tmp_path / "interrupted"
    killed = _cli(command, root, data, TRANSMITER_FAULT_KILL="ft:4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    ft = _stage(root, "ft")
    assert (ft / "checkpoints" / "last.ckpt").is_file() and not (ft / "stage.json").exists()
    assert not (root / "outputs" / "run" / "results.json").exists()

    killed = _cli(command, root, data, TRANSMITER_FAULT_KILL="fit:4")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert "ft: resuming from" in killed.stdout + killed.stderr and (ft / "stage.json").is_file()
    fit = _stage(root, "adapter_fit")
    assert (fit / "checkpoints" / "last.ckpt").is_file() and not (fit / "stage.json").exists()

    final = _cli(command, root, data)
    assert final.returncode == 0, final.stderr[-3000:]
    assert "fit: resuming from" in final.stdout + final.stderr

    ref = tmp_path / "reference"
    # tensors, not file bytes: safetensors writes its metadata keys in a per-process random order
    for name, file in (
        ("ft", "model.safetensors"),
        ("adapter_fit", "adapter.safetensors"),
        ("adapter_transfer", "adapter.safetensors"),
    ):
        mine, theirs = _tensors(_stage(root, name) / file), _tensors(_stage(ref, name) / file)
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), name
    (resumed,) = load_records([root / "outputs" / "run"])
    (uninterrupted,) = load_records([ref / "outputs" / "run"])
    assert resumed["metrics"] == uninterrupted["metrics"]


@pytest.mark.slow
def test_killed_sweep_rerun_skips_finished_jobs_resumes_the_rest_and_reports_all(compose, tmp_path):
    from transmiter.reporting.report import write_report
    from transmiter.reporting.tables import results_table

    data = tmp_path / "data"
    _fake(compose(["experiment=smoke", f"paths.data_dir={data}"]))
    sweep = [
        "-m",
        "experiment=smoke",
        "method=skip_tuning",
        "method.module.epochs=2",
        "seed=1,2",
        "hydra.sweep.dir=outputs/sweep",
        "hydra.sweep.subdir=seed${seed}",
    ]
    # 3 Skip Tuning steps per epoch: job 1 takes steps 1-6, job 2 is killed at its 4th step (2nd epoch)
    killed = _cli(sweep, tmp_path, data, TRANSMITER_FAULT_KILL="skip_tuning:10")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    out = tmp_path / "outputs" / "sweep"
    assert (out / "seed1" / "job.json").is_file() and not (out / "seed2" / "job.json").exists()

    again = _cli(sweep, tmp_path, data)
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stdout + again.stderr
    assert again.stdout.count("[skipped]") == 1 and "seed 1 is done" in again.stdout
    assert "skip_tuning: resuming from" in log
    records = load_records([out])
    assert sorted(r["seed"] for r in records) == [1, 2]
    (row,) = results_table(records)
    assert sorted(row.seeds) == [1, 2]
    report = write_report(records, tmp_path / "report")
    assert "From 2 results records" in report["markdown"].read_text()
    assert json.loads((out / "seed2" / "job.json").read_text())["status"] == "done"
