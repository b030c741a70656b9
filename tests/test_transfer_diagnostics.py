"""TransMiter's diagnostics: transfer figures, the lambda -> infinity identity behind the no-rotation row,
the pre-transfer guard, and how reports show diagnostic rows and the regime line."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math

import pytest
import torch

from transmiter.evaluation.metrics import harmonic_mean
from transmiter.methods.transmiter import DIAGNOSTIC_ROWS, FitData, TransMiter, TransMiterDiagnostics
from transmiter.transfer.adapter import LogitAdapter
from transmiter.transfer.alignment import linear_cka, relative_residual, rotation_distance, transfer_figures
from transmiter.transfer.procrustes import regularized_procrustes
from transmiter.transfer.transfer import rotate_adapter, transfer_adapter, transfer_adapter_with_details

K = 48


def _adapter(seed: int = 0) -> LogitAdapter:
    """A float64 adapter with a non-trivial MLP (as after fitting)."""
    adapter = LogitAdapter(K, seed=seed, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for p in adapter.blocks.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return adapter.eval()


def _logits(n: int = 300, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 15 + 4 * torch.randn(n, K, generator=g, dtype=torch.float64)


def _orthogonal(d: int, seed: int) -> torch.Tensor:
    q, r = torch.linalg.qr(
        torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    )
    return q * torch.sign(torch.diagonal(r))


# ---------------------------------------------------------------------------------- figures
def test_linear_cka_equals_the_gram_matrix_definition_and_ignores_rotations():
    x = _logits(80, seed=1)[:, :10]
    y = torch.tanh(
        (x - 15) / 4 @ torch.randn(10, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    )
    # the kernel form (Kornblith et al.): HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), K = X X^T, centred
    h = torch.eye(80, dtype=torch.float64) - 1.0 / 80
    kx, ky = h @ x @ x.T @ h, h @ y @ y.T @ h
    expected = float((kx * ky).sum() / torch.sqrt((kx * kx).sum() * (ky * ky).sum()))
    assert linear_cka(x, y) == pytest.approx(expected, rel=1e-10)
    assert 0.0 < linear_cka(x, y) < 1.0
    assert linear_cka(x, 3.0 * x @ _orthogonal(10, 3) + 5.0) == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="same N"):
        linear_cka(x, y[:40])


def test_a_known_rotation_is_recovered_and_measured():
    """Target logits = source logits with columns permuted: a rotation of the standardised logits, so the
    latents differ by a known rotation that plain Procrustes recovers exactly."""
    adapter, ls = _adapter(), _logits()
    perm = torch.randperm(K, generator=torch.Generator().manual_seed(4))
    lt = ls[:, perm]
    moved = transfer_adapter_with_details(adapter, ls, lt, lam=0.0)
    figures = transfer_figures(adapter, ls, lt, moved.rotation)
    assert figures["residual_after"] < 1e-10 < 0.5 < figures["residual_before"]
    assert figures["cka"] == pytest.approx(1.0, abs=1e-12)
    moved_columns = int((perm != torch.arange(K)).sum())
    assert figures["rotation_distance"] == pytest.approx(math.sqrt(2 * moved_columns / K), rel=1e-9)
    assert figures["num_rows"] == ls.shape[0]
    # the moved adapter on the target reproduces the source adapter on the source, column-permuted
    torch.testing.assert_close(moved.adapter(lt), adapter(ls)[:, perm], rtol=0, atol=1e-9)


def test_residual_and_rotation_distance_by_hand():
    zs = _logits(50, seed=5)
    q = _orthogonal(K, 6)
    zt = zs @ q.T + 0.1  # zt q = zs + 0.1 * (ones @ q)
    expected = float(torch.linalg.matrix_norm(0.1 * torch.ones(50, K, dtype=torch.float64) @ q))
    assert relative_residual(zs, zt, q) == pytest.approx(
        expected / float(torch.linalg.matrix_norm(zs)), rel=1e-9
    )
    assert rotation_distance(torch.eye(K)) == 0.0
    assert rotation_distance(-torch.eye(K)) == pytest.approx(2.0)


def test_huge_lambda_gives_the_identity_rotation_and_the_no_rotation_adapter():
    adapter, ls = _adapter(), _logits()
    lt = ls[:, torch.randperm(K, generator=torch.Generator().manual_seed(8))] + 0.5 * _logits(seed=9)
    lam = 1e13
    zs, zt = ls @ adapter.W.T, lt @ adapter.W.T
    torch.testing.assert_close(
        regularized_procrustes(z_source=zs, z_target=zt, lam=lam),
        torch.eye(K, dtype=torch.float64),
        rtol=0,
        atol=1e-8,
    )
    no_rotation = rotate_adapter(adapter, torch.eye(K, dtype=torch.float64))
    assert torch.equal(no_rotation.W, adapter.W)  # Q = I leaves the source adapter exactly as it is
    torch.testing.assert_close(
        transfer_adapter(adapter, ls, lt, lam=lam)(lt), no_rotation(lt), rtol=0, atol=1e-6
    )


class _StubContext:
    """What `_rotate_to_target` needs of a run context: timings."""

    timings: dict = {}

    @contextlib.contextmanager
    def timed(self, name):
        yield


def _method_on_logits(cls, logits_of: dict, **kwargs):
    """A transfer method whose logits come from `logits_of[model]` (no models, no caches)."""
    method = cls(name="t", source_finetune=None, K=K, **kwargs)
    method.logits = lambda ctx, bundle, *args: logits_of[bundle]
    method._templates = lambda ctx, kind=None: []
    return method


def test_identical_source_and_target_make_transmiter_no_rotation_and_source_rows_agree():
    """Same model on both sides: TransMiter (lam = 500), TransMiter (no rotation) and the fitted adapter on
    the source itself give the same outputs, through the rows' own code path."""
    adapter, logits = _adapter(), _logits()
    method = _method_on_logits(TransMiterDiagnostics, {"source": logits, "target": logits.clone()})
    data = FitData(items=[], views=[], description="", fingerprint="")
    ctx = _StubContext()
    moved, figures = method._rotate_to_target(ctx, adapter, "source", "target", data, [])
    identity = torch.eye(K, dtype=torch.float64)
    unrotated, figures_identity = method._rotate_to_target(
        ctx, adapter, "source", "target", data, [], identity
    )
    test = _logits(100, seed=11)
    on_source = adapter(test)
    torch.testing.assert_close(moved.adapter(test), on_source, rtol=0, atol=1e-6)
    torch.testing.assert_close(unrotated(test), on_source, rtol=0, atol=0)
    assert figures["residual_before"] == 0.0 and figures["residual_after"] < 1e-6
    assert figures["rotation_distance"] < 1e-6 and figures["cka"] == pytest.approx(1.0, abs=1e-12)
    assert figures_identity["rotation_distance"] == 0.0
    assert figures_identity["residual_after"] == figures_identity["residual_before"]


def test_diagnostic_rows_are_validated():
    assert list(DIAGNOSTIC_ROWS) == ["source", "no_rotation", "target_oracle"]
    for rows in ([], ["source", "source"], ["rotated"]):
        with pytest.raises(ValueError, match="method.rows"):
            TransMiterDiagnostics(name="d", source_finetune=None, rows=rows)


# ---------------------------------------------------------------------------------- the guard
@pytest.fixture
def guard_setup(compose, tmp_path):
    """A smoke-study context on a fake dataset, with models whose val predictions we choose: "good"
    predicts every label, "bad" none."""
    from transmiter.context import RunContext, dataset_spec_from_config
    from transmiter.data.fake import write_fake_dataset

    cfg = compose(["experiment=smoke_study", f"paths.output_dir={tmp_path / 'job'}"])
    write_fake_dataset(
        dataset_spec_from_config(cfg.dataset), cfg.paths.data_dir, num_classes=6, per_class=(4, 2, 3)
    )
    ctx = RunContext.from_config(cfg)
    seen = []

    def make(tuned: str):
        def logits(ctx, bundle, items, views, names, templates, subset):
            seen.append((subset, [d.impath for d in items]))
            labels = torch.tensor([d.label for d in items])
            wrong = (labels + 1) % len(names)
            return (
                10.0 * torch.nn.functional.one_hot(labels if bundle == "good" else wrong, len(names)).float()
            )

        method = TransMiter(name="transmiter", source_finetune=None, K=64)
        method.source_models = lambda ctx: ("source", tuned)
        method.logits = logits
        return method

    splits = ctx.splits(subsample="all")
    return ctx, make, seen, splits


def test_guard_fires_when_the_finetuned_source_is_below_the_target_zero_shot(guard_setup, caplog):
    ctx, make, seen, splits = guard_setup
    classnames = list(splits.classnames)
    with caplog.at_level(logging.WARNING, logger="transmiter"):
        guard = make("bad").pre_transfer_guard(ctx, classnames, "good")
        again = make("bad").pre_transfer_guard(ctx, classnames, "good")  # a second row of the same job
    assert guard == again
    assert guard["checked"] and guard["fires"] and guard["split"] == "val" and guard["classes"] == "base"
    assert guard["source_finetuned_val_acc"] == 0.0 and guard["target_zeroshot_val_acc"] == 100.0
    assert sum("transfer guard" in r.getMessage() for r in caplog.records) == 1  # once per job
    # scored on the validation images of the training (base) classes only: never test
    val_base = sorted(d.impath for d in splits.val if d.label < 3)
    assert guard["num_images"] == len(val_base) > 0
    assert all(subset == "val" and sorted(paths) == val_base for subset, paths in seen)


@pytest.mark.parametrize(("tuned", "target"), [("good", "bad"), ("good", "good"), ("bad", "bad")])
def test_guard_stays_silent_otherwise(guard_setup, caplog, tuned, target):
    ctx, make, _, splits = guard_setup
    with caplog.at_level(logging.WARNING, logger="transmiter"):
        guard = make(tuned).pre_transfer_guard(ctx, list(splits.classnames), target)
    assert guard["checked"] and not guard["fires"]
    assert not any("transfer guard" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------- reports
PAIR = {"source": {"name": "weak", "arch": "A"}, "target": {"name": "strong", "arch": "B"}}


def _record(dataset, seed, row, method, role, base, novel, extra=None):
    return {
        "schema": 1,
        "setting": "base2novel",
        "dataset": dataset,
        "seed": seed,
        "row": row,
        "method": method,
        "protocol": "masked-joint" if role == "pair" else "coop-separate",
        "metrics": {"base": base, "novel": novel, "hm": harmonic_mean(base, novel)},
        "extra": {"role": role, **(extra or {})},
        "config": {"pair": PAIR},
    }


def _study_job(dataset, seed, shift=0.0, cka=0.8):
    """A base2novel study job's records: zero-shot and Skip Tuning of both models, one transfer row and
    the three diagnostics."""
    transfer = {"source_finetune": "skip_tuning", "transfer_figures": {"cka": cka}}
    return [
        _record(dataset, seed, "Zero-shot weak", "zeroshot", "source", 60 + shift, 70),
        _record(dataset, seed, "Zero-shot strong", "zeroshot", "target", 70 + shift, 75),
        _record(dataset, seed, "Skip Tuning weak", "skip_tuning", "source", 80 + shift, 72),
        _record(dataset, seed, "Skip Tuning strong", "skip_tuning", "target", 85 + shift, 74),
        _record(dataset, seed, "FT weak", "ft", "source", 99, 99),  # not the transfer's fine-tuner
        _record(dataset, seed, "TransMiter weak→strong", "transmiter", "pair", 78, 71, transfer),
        *(
            _record(
                dataset,
                seed,
                f"{label} weak→strong",
                "transmiter_diagnostics",
                "pair",
                70 + i,
                60,
                {"diagnostic": kind, **transfer},
            )  # fmt: skip
            for i, (kind, label) in enumerate(reversed(DIAGNOSTIC_ROWS.items()))
        ),
    ]


def test_report_puts_diagnostic_rows_in_their_block_and_prints_the_regime_line(tmp_path):
    from transmiter.reporting.report import main as report_main

    records = _study_job("DTD", 1, shift=0.0, cka=0.8) + _study_job("DTD", 2, shift=2.0, cka=0.6)
    records += _study_job("EuroSAT", 1, shift=10.0, cka=0.5)
    for i, rec in enumerate(records):
        folder = tmp_path / "runs" / str(i)
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(rec))
    assert report_main([str(tmp_path / "runs"), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "results.md").read_text()
    accuracy = md.split("## Cost")[0]
    main, rest = accuracy.split("Diagnostics (not methods)")
    assert "TransMiter weak→strong" in main and "(source)" not in main and "(no rotation)" not in main
    diag_rows = [line.split(" | ")[1] for line in rest.splitlines() if line.startswith("| DTD |")]
    assert diag_rows == [f"{label} weak→strong" for label in DIAGNOSTIC_ROWS.values()]  # fixed order
    assert "| **Average** | TransMiter (target oracle) weak→strong |" in rest
    # the regime line: Skip Tuning's gains (not FT's), seed means; CKA from the transfer rows
    dtd = next(line for line in rest.splitlines() if line.startswith("- weak→strong, DTD"))
    assert "(Skip Tuning; seeds 1,2)" in dtd
    assert "FT gain source +20.00 base / +2.00 novel, target +15.00 base / -1.00 novel" in dtd
    assert "zero-shot gap +10.00 base / +5.00 novel; CKA 0.700" in dtd
    assert any(line.startswith("- weak→strong, **Average** of 2 datasets") for line in rest.splitlines())
    regime = list(csv.DictReader(open(tmp_path / "rep" / "regime.csv")))
    by_dataset = {r["dataset"]: r for r in regime}
    assert float(by_dataset["DTD"]["source_ft_gain_base"]) == 20.0
    assert float(by_dataset["DTD"]["cka"]) == pytest.approx(0.7)
    assert float(by_dataset["Average"]["cka"]) == pytest.approx(0.6)  # mean of the dataset means
    assert by_dataset["DTD"]["finetuner"] == "Skip Tuning" and by_dataset["DTD"]["seeds"] == "1 2"
    results = list(csv.DictReader(open(tmp_path / "rep" / "results.csv")))
    assert {r["diagnostic"] for r in results} == {"", *DIAGNOSTIC_ROWS}
    # the costs table keeps them apart too; the plots show method rows only
    assert md.split("## Cost")[1].count("Diagnostics (not methods)") == 1


def test_no_regime_line_without_a_transfer_row_or_a_study_role():
    from transmiter.reporting.regime import regime_lines

    job = _study_job("DTD", 1)
    assert regime_lines([r for r in job if r["extra"]["role"] != "pair"]) == []
    assert (
        regime_lines([{**r, "extra": {k: v for k, v in r["extra"].items() if k != "role"}} for r in job])
        == []
    )


# ---------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("experiment", ["demo", "demo_full", "smoke_study"])
def test_study_diagnostics_follow_the_transmiter_recipe(compose, experiment):
    """In a study the diagnostic rows use exactly the TransMiter row's recipe (so they reuse its stages),
    whatever the experiment overrides there."""
    from omegaconf import OmegaConf

    from transmiter.config.instantiate import instantiate

    cfg = compose([f"experiment={experiment}", "hydra/launcher=basic"])
    tm = OmegaConf.to_container(cfg.method.methods.transmiter, resolve=True)
    diag = OmegaConf.to_container(cfg.method.methods.transmiter_diagnostics, resolve=True)
    for key in ("_target_", "name"):
        tm.pop(key)
        diag.pop(key)
    assert diag.pop("rows") == list(DIAGNOSTIC_ROWS)
    assert diag == tm
    study = instantiate(cfg.method)
    assert "transmiter_diagnostics" in study.transfer
    built = study.methods["transmiter_diagnostics"]
    assert built.artifact_config(64) == study.methods["transmiter"].artifact_config(64)
