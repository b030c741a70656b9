"""EFT-style logit arithmetic baselines against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from transmiter.transfer import logit_arithmetic
from transmiter.transfer.logit_arithmetic import base_change, eft_logits, ensemble, self_ensemble


def _log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


T_ZS = [[2.0, 0.0, 1.0, 9.0]]  # last column: an auxiliary name, must be ignored (C = 3)
S_FT = [[0.5, 3.0, -1.0]]
S_ZS = [[1.0, 1.0, 0.0, -4.0]]


def test_eft_matches_hand_computation():
    t, f, s = _log_softmax(T_ZS[0][:3]), _log_softmax(S_FT[0]), _log_softmax(S_ZS[0][:3])
    alpha = 0.7
    expected = [t[i] + alpha * (f[i] - s[i]) for i in range(3)]
    got = eft_logits(torch.tensor(T_ZS), torch.tensor(S_FT), torch.tensor(S_ZS), alpha=alpha)
    assert got.shape == (1, 3)
    assert got[0].tolist() == pytest.approx(expected, abs=1e-6)


def test_other_variants_match_hand_computation():
    t, f, s = _log_softmax(T_ZS[0][:3]), _log_softmax(S_FT[0]), _log_softmax(S_ZS[0][:3])
    a = 0.25
    tz, sf, sz = torch.tensor(T_ZS), torch.tensor(S_FT), torch.tensor(S_ZS)
    assert base_change(tz, sf, sz, a)[0].tolist() == pytest.approx(
        [f[i] + a * (t[i] - s[i]) for i in range(3)], abs=1e-6
    )
    assert ensemble(tz, sf, a)[0].tolist() == pytest.approx(
        [a * f[i] + (1 - a) * t[i] for i in range(3)], abs=1e-6
    )
    assert self_ensemble(sz, sf, a)[0].tolist() == pytest.approx(
        [a * f[i] + (1 - a) * s[i] for i in range(3)], abs=1e-6
    )


def test_raw_mode_and_explicit_num_classes():
    tz, sf, sz = torch.tensor(T_ZS), torch.tensor([S_FT[0] + [5.0]]), torch.tensor(S_ZS)
    got = eft_logits(tz, sf, sz, alpha=1.0, num_classes=2, raw=True)
    assert got[0].tolist() == pytest.approx([2.0 + 0.5 - 1.0, 0.0 + 3.0 - 1.0])
    with pytest.raises(ValueError):
        eft_logits(tz, sf, sz, num_classes=5)


def test_prompttransfer_is_documented_as_not_implemented():
    assert "PromptTransfer" in (logit_arithmetic.__doc__ or "")
    assert not hasattr(logit_arithmetic, "prompt_transfer")


def test_eft_method_variant_dispatches_to_each_baseline():
    from transmiter.methods.transmiter import EFT_VARIANTS, combine_logits

    tz, sf, sz = torch.tensor(T_ZS), torch.tensor(S_FT), torch.tensor(S_ZS)
    a = 0.25
    expected = {
        "eft": eft_logits(tz, sf, sz, a),
        "base_change": base_change(tz, sf, sz, a),
        "ensemble": ensemble(tz, sf, a),
        "self_ensemble": self_ensemble(sz, sf, a),
    }
    assert set(EFT_VARIANTS) == set(expected)
    for variant, want in expected.items():
        unused = {"ensemble": "s", "self_ensemble": "t"}.get(variant)
        got = combine_logits(
            variant, None if unused == "t" else tz, sf, None if unused == "s" else sz, alpha=a
        )
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="method.variant"):
        combine_logits("proxy", tz, sf, sz)


def test_eft_variant_configs_are_distinct_rows_with_fixed_alpha(compose):
    from transmiter.config.instantiate import instantiate

    rows = {}
    for name in ("eft", "eft_base_change", "eft_ensemble", "eft_self_ensemble"):
        cfg = compose([f"method={name}", "pair=tiny_random"])
        method = instantiate(cfg.method)
        # fixed in advance, never chosen on test: 1 (reference) for EFT, 0.5 for the variants (at 1 they
        # would duplicate the EFT row or the fine-tuned source)
        assert method.name == name and method.alpha == (1.0 if name == "eft" else 0.5)
        rows[name] = method._row(_Ctx(cfg))
    assert len(set(rows.values())) == 4 and rows["eft"] == "EFT tiny-random→tiny-random-b"
    assert rows["eft_ensemble"] == "EFT ensemble tiny-random→tiny-random-b"
    study = compose(["method=study"]).method
    assert {"eft", "eft_base_change", "eft_ensemble", "eft_self_ensemble"} <= set(study.transfer)


class _Ctx:
    def __init__(self, cfg):
        self.cfg = cfg
