"""`make gpu-check` (bench.gpu): its checks run here on the CPU at toy sizes (the same functions, only the
device and the sizes differ on a GPU), it says plainly that it skipped without CUDA, and its README section
is written in place and kept when the benchmark suite regenerates the file."""

from __future__ import annotations

import math

import pytest
import torch

from bench import gpu
from bench.core import BenchRecord
from bench.report import GPU_END, GPU_START, kept_block, write_markdown
from tests.toys import register_tiny_config


@pytest.fixture(scope="module")
def toy_sizes():
    arch = register_tiny_config()
    return gpu.Sizes(
        archs=(arch,),
        classes=(6, 12),
        image_size=32,
        batch=4,
        steps=1,
        precision="bf16-mixed",  # the GPU path's autocast, on the CPU
        feature_arch=arch,
        feature_batch=8,
        feature_iters=2,
        rows=512,
        K=64,
        C=10,
        fit_epochs=1,
    )


def _finite_numbers(record: BenchRecord) -> None:
    assert record.status != "error", record.notes
    for key, value in record.figures.items():
        if isinstance(value, float):
            assert math.isfinite(value), (record.name, key)


def test_checks_run_on_the_cpu_at_toy_sizes(toy_sizes):
    seen = []
    records = gpu.run_checks("cpu", toy_sizes, progress=seen.append)
    names = [r.name for r in records]
    arch = toy_sizes.archs[0]
    assert names == [
        f"gpu_steps[{arch}, C=6]",
        f"gpu_steps[{arch}, C=12]",
        f"gpu_feature_pass[{arch}]",
        "gpu_transmiter[512 x 64]",
    ]
    for record in records:
        _finite_numbers(record)
    steps = records[0].figures
    assert steps["FT s/step"] > 0 and steps["SkipT s/step (back blocks, CSkip-kept classes)"] > 0
    feature = records[2]
    assert (
        feature.figures["achieved (images/s)"] > 0 and feature.figures["encoder GFLOP / image (counted)"] > 0
    )
    assert feature.ratio is None  # no peak for a CPU: no utilisation claimed
    assert records[3].figures["moved adapter's logits finite"] is True
    assert len(seen) == 3  # one progress line per check


def test_peak_table_and_override(monkeypatch):
    monkeypatch.delenv("TRANSMITER_PEAK_TFLOPS", raising=False)
    assert gpu.peak_tflops("NVIDIA H200") == 989.4
    assert gpu.peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu.peak_tflops("Some Future GPU") is None
    monkeypatch.setenv("TRANSMITER_PEAK_TFLOPS", "790")
    assert gpu.peak_tflops("NVIDIA H200") == 790.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_without_cuda_it_says_skipped_and_exits_zero(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\n## Summary\n")
    assert gpu.main(["--write", str(readme)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(gpu.SKIP_LINE) and len(out.strip().splitlines()) == 1
    assert readme.read_text() == "# Benchmarks\n\n## Summary\n"  # no figures, nothing written


def test_gpu_section_is_replaced_in_place_and_survives_regeneration(tmp_path):
    record = BenchRecord(
        name="gpu_feature_pass[X]", benchmark="gpu", title="GPU", figures={"achieved (images/s)": 1.5}
    )
    machine = {"gpu": "Test GPU x 1", "date": "today", "torch": torch.__version__}
    first = gpu.gpu_section([record], machine, "python -m bench.gpu", 12.0)
    text = gpu.replace_gpu_section("# Benchmarks\n\nintro\n\n## Summary\n\nrows\n", first)
    assert text.index(gpu.GPU_START) < text.index("## Summary") and "| achieved (images/s) | 1.5 |" in text
    record.figures["achieved (images/s)"] = 2.5
    again = gpu.replace_gpu_section(text, gpu.gpu_section([record], machine, "python -m bench.gpu", 12.0))
    assert again.count(gpu.GPU_START) == 1 and "| 2.5 |" in again and "| 1.5 |" not in again
    # `python -m bench --write` regenerates everything else and keeps the section
    path = tmp_path / "README.md"
    path.write_text(again)
    write_markdown(
        path, [BenchRecord(name="flops[x]", benchmark="flops", title="t", ratio=1.0)], machine, "cmd"
    )
    regenerated = path.read_text()
    assert kept_block(regenerated, GPU_START, GPU_END) == kept_block(again, GPU_START, GPU_END) != ""
    assert "flops[x]" in regenerated
