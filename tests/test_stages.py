"""Content-addressed stages: reuse, identity sensitivity, incomplete stages redone, concurrency."""

from __future__ import annotations

import multiprocessing as mp
import time

from transmiter.stages import StageStore


def test_stage_runs_once_and_is_reused(tmp_path):
    store = StageStore(tmp_path)
    calls = []

    def work(path):
        calls.append(path)
        (path / "out.txt").write_text("x")
        return {"value": 3}

    first = store.run("fit", {"a": 1}, work)
    second = store.run("fit", {"a": 1}, work)
    assert len(calls) == 1 and not first.reused and second.reused
    assert second.outputs == {"value": 3} and (second.path / "out.txt").read_text() == "x"
    store.run("fit", {"a": 2}, work)
    assert len(calls) == 2


def test_interrupted_stage_is_redone_in_place(tmp_path):
    store = StageStore(tmp_path)

    def crash(path):
        (path / "checkpoint.ckpt").write_text("partial")
        raise KeyboardInterrupt

    try:
        store.run("fit", {"a": 1}, crash)
    except KeyboardInterrupt:
        pass
    assert not store.is_done("fit", {"a": 1})
    seen = {}

    def resume(path):
        seen["checkpoint"] = (path / "checkpoint.ckpt").read_text()  # earlier progress is still there
        return {}

    store.run("fit", {"a": 1}, resume)
    assert seen["checkpoint"] == "partial" and store.is_done("fit", {"a": 1})


def _worker(root, counter_file):
    def work(path):
        with open(counter_file, "a") as f:
            f.write("1")
        time.sleep(0.5)
        return {}

    StageStore(root).run("shared", {"k": 1}, work)


def test_concurrent_attempts_do_the_work_once(tmp_path):
    counter = tmp_path / "count"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "s"), str(counter))) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert counter.read_text() == "1"
