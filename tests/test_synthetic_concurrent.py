"""Side-by-side pretraining of the synthetic models (worker processes sharing the CPU cores)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from transmiter.synthetic import concurrent as cc
from transmiter.synthetic import pretrain as pt
from transmiter.synthetic.architectures import STRONG_MODEL, WEAK_MODEL


def _cfg(model: str, steps: int, **kw) -> pt.PretrainConfig:
    return pt.pretrain_config(model, "tiny", **({"steps": steps, "batch_size": 8} | kw))


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize(
    ("cores", "running", "threads"), [(2, 2, 1), (2, 1, 2), (2, 0, 2), (1, 2, 1), (8, 3, 2)]
)
def test_core_share_gives_each_running_training_its_share(cores, running, threads):
    assert cc.CoreShare(SimpleNamespace(value=running), cores).threads_now() == threads


def test_core_share_sets_threads_and_records_the_schedule(restore_threads):
    running, done = SimpleNamespace(value=2), SimpleNamespace(value=0)
    share = cc.CoreShare(running, cores=2, steps_done=done)
    for step in range(5):
        if step == 3:
            running.value = 1  # the other training finished
        share.on_train_batch_start(None, None, None, step)
        assert torch.get_num_threads() == (1 if step < 3 else 2)
        share.on_train_batch_end(None, None, None, None, step)
    assert share.stats() == {"thread_schedule": [[0, 1], [3, 2]]}
    assert done.value == 5


def test_side_by_side_is_refused_where_it_cannot_help(monkeypatch, tmp_path, caplog):
    monkeypatch.delenv("TRANSMITER_TORCH_THREADS", raising=False)
    monkeypatch.setattr(pt, "cpu_cores", lambda: 2)
    assert cc.side_by_side_refusal("cpu") is None
    assert "GPU" in cc.side_by_side_refusal("gpu")
    monkeypatch.setenv("TRANSMITER_TORCH_THREADS", "2")  # a fixed thread count was asked for
    assert "TRANSMITER_TORCH_THREADS" in cc.side_by_side_refusal("cpu")
    monkeypatch.delenv("TRANSMITER_TORCH_THREADS")
    monkeypatch.setattr(pt, "cpu_cores", lambda: 1)
    assert "one CPU core" in cc.side_by_side_refusal("cpu")
    # refused: trained here, one at a time, with a warning saying why
    monkeypatch.setattr(cc, "_train_side_by_side", lambda *a, **k: pytest.fail("spawned workers"))
    before = pt.TRAINING_RUNS
    with caplog.at_level("WARNING", logger=cc.__name__):
        paths = cc.pretrain_all_or_load(
            [_cfg(WEAK_MODEL, 1), _cfg(STRONG_MODEL, 1)], tmp_path, progress=False, side_by_side=True
        )
    assert pt.TRAINING_RUNS == before + 2 and len(paths) == 2
    assert "one model at a time: this process may use only one CPU core" in caplog.text


def _need_side_by_side(monkeypatch) -> None:
    monkeypatch.delenv("TRANSMITER_TORCH_THREADS", raising=False)
    refusal = cc.side_by_side_refusal("cpu")
    if refusal:
        pytest.skip(refusal)


def test_side_by_side_trains_the_same_recipe_and_then_hits_the_cache(tmp_path, monkeypatch):
    _need_side_by_side(monkeypatch)
    short, long = _cfg(WEAK_MODEL, 3), _cfg(STRONG_MODEL, 12)
    before = pt.TRAINING_RUNS
    paths = cc.pretrain_all_or_load(
        [short, long], tmp_path, progress=False, accelerator="cpu", side_by_side=True
    )
    assert pt.TRAINING_RUNS == before + 2
    one_thread_throughout = []
    for cfg in (short, long):
        meta = pt.read_valid_meta(cfg, tmp_path)
        assert meta is not None and paths[cfg.model_name] == pt.entry_dir(cfg, tmp_path) / pt.CHECKPOINT_NAME
        schedule = meta["stats"]["thread_schedule"]
        assert schedule[0][0] == 0 and {n for _, n in schedule} <= {1, 2}
        if schedule == [[0, 1]]:
            one_thread_throughout.append(cfg)
    # both workers are counted as running before either starts, so the first to finish never gets a second
    # thread; its checkpoint must be bit-identical to the same recipe trained here on one thread (same
    # data stream, same seed, same kernels): side by side changes the scheduling, not the training
    assert one_thread_throughout
    for cfg in one_thread_throughout:
        model, _ = pt.pretrain(cfg, progress=False, accelerator="cpu", threads=1)
        reference = {k: v.detach() for k, v in model.state_dict().items()}
        trained = load_file(paths[cfg.model_name])
        assert trained.keys() == reference.keys()
        for k in reference:
            torch.testing.assert_close(trained[k], reference[k], atol=0, rtol=0, msg=k)
    # everything cached now: no worker, no training
    monkeypatch.setattr(cc, "_train_side_by_side", lambda *a, **k: pytest.fail("trained again"))
    runs = pt.TRAINING_RUNS
    assert cc.pretrain_all_or_load([short, long], tmp_path, progress=False, side_by_side=True) == paths
    assert pt.TRAINING_RUNS == runs


def test_one_config_per_model(tmp_path):
    with pytest.raises(ValueError, match="one config per model"):
        cc.pretrain_all_or_load([_cfg(WEAK_MODEL, 2), _cfg(WEAK_MODEL, 3)], tmp_path, side_by_side=True)


@pytest.mark.slow
def test_a_failing_worker_is_raised_with_its_traceback(tmp_path, monkeypatch):
    _need_side_by_side(monkeypatch)
    not_a_folder = tmp_path / "cache"
    not_a_folder.write_text("a file where the cache folder should be")
    with pytest.raises(RuntimeError, match=rf"pretraining {WEAK_MODEL}|pretraining {STRONG_MODEL}") as err:
        cc.pretrain_all_or_load(
            [_cfg(WEAK_MODEL, 2), _cfg(STRONG_MODEL, 2)], not_a_folder, progress=False, side_by_side=True
        )
    assert "failed in its worker process" in str(err.value) and "Traceback" in str(err.value)
