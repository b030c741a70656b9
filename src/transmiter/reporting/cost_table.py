"""Cost table from results records: training time, inference FLOPs and trainable parameters per method.

Per (setting, method row), over every dataset × seed (re-runs replaced as in `tables`):
* training time: mean of `costs.train_time_s`; a record without it falls back to the sum of its
  training-like timings (`train_s`, `fit_s`, `transfer_s`, `refine_s`, `*_train_s`, ...; marked †),
  a zero-shot record without either counts 0 s (nothing is trained);
* inference FLOPs per image: mean of `costs.inference_flops_per_image` (the method's total at test
  time; encoder + adapter FLOPs when only those two are recorded), with the adapter's share of the
  encoder, mean of `adapter_flops_per_image / encoder_flops_per_image`, shown in %;
* trainable parameters: mean of `costs.trainable_params` (zero-shot without it: 0).
Whatever no record provides is shown as "–" (empty in the CSV). Study rows recorded as skipped
(`extra.skipped`, e.g. Skip Tuning on an RN50) are left out; diagnostic rows (`extra.diagnostic`) get a
table of their own under each setting's.

    rows = cost_table(records)
    print(costs_markdown(rows)); write_costs_csv(rows, "costs.csv")
"""

from __future__ import annotations

import csv
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transmiter.reporting.ordering import method_family
from transmiter.reporting.tables import (
    MISSING,
    diagnostic_of,
    latest_records,
    md_cell,
    row_label,
    row_sort_key,
    settings_of,
)

TRAINING_TIMINGS = ("train_s", "fit_s", "transfer_s", "refine_s")
FALLBACK_MARK = "†"


@dataclass
class CostRow:
    setting: str
    method: str  # row label
    method_name: str | None = None
    runs: int = 0
    train_times: list[float] = field(default_factory=list)
    train_time_sources: set[str] = field(default_factory=set)  # "costs" | "timings" | "zero-shot"
    inference_flops: list[float] = field(default_factory=list)
    adapter_ratios: list[float] = field(default_factory=list)  # adapter / encoder FLOPs (fraction)
    trainable_params: list[float] = field(default_factory=list)
    diagnostic: str | None = None  # the record's `extra.diagnostic` (a diagnostic row, not a method)

    @staticmethod
    def _mean(values: list[float]) -> float | None:
        return statistics.fmean(values) if values else None

    @property
    def train_time_s(self) -> float | None:
        return self._mean(self.train_times)

    @property
    def train_time_std_s(self) -> float | None:
        return statistics.stdev(self.train_times) if len(self.train_times) > 1 else None

    @property
    def inference_flops_per_image(self) -> float | None:
        return self._mean(self.inference_flops)

    @property
    def adapter_encoder_ratio(self) -> float | None:
        return self._mean(self.adapter_ratios)

    @property
    def trainable(self) -> float | None:
        return self._mean(self.trainable_params)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def is_training_timing(name: str) -> bool:
    return name in TRAINING_TIMINGS or name.endswith(tuple("_" + t for t in TRAINING_TIMINGS))


def training_time(rec: dict[str, Any]) -> tuple[float | None, str]:
    """(seconds, source) of one record's training; source "costs", "timings", "zero-shot" or ""."""
    value = _number((rec.get("costs") or {}).get("train_time_s"))
    if value is not None:
        return value, "costs"
    timings = rec.get("timings") or {}
    parts = [_number(v) for k, v in timings.items() if is_training_timing(k)]
    parts = [p for p in parts if p is not None]
    if parts:
        return sum(parts), "timings"
    if (method_family(rec.get("method")) or method_family(row_label(rec))) == "zeroshot":
        return 0.0, "zero-shot"
    return None, ""


def inference_flops(costs: dict[str, Any]) -> float | None:
    total = _number(costs.get("inference_flops_per_image"))
    if total is not None:
        return total
    encoder = _number(costs.get("encoder_flops_per_image"))
    adapter = _number(costs.get("adapter_flops_per_image"))
    return encoder + adapter if encoder is not None and adapter is not None else None


def cost_table(records: list[dict[str, Any]], order: str = "canonical") -> list[CostRow]:
    rows: dict[tuple[str, str], CostRow] = {}
    for rec in latest_records(records):
        if (rec.get("extra") or {}).get("skipped"):  # a study row that could not run
            continue
        key = (str(rec.get("setting") or "unknown"), row_label(rec))
        row = rows.get(key)
        if row is None:
            row = rows[key] = CostRow(*key, method_name=rec.get("method"), diagnostic=diagnostic_of(rec))
        row.runs += 1
        seconds, source = training_time(rec)
        if seconds is not None:
            row.train_times.append(seconds)
            row.train_time_sources.add(source)
        costs = rec.get("costs") or {}
        flops = inference_flops(costs)
        if flops is not None:
            row.inference_flops.append(flops)
        encoder = _number(costs.get("encoder_flops_per_image"))
        adapter = _number(costs.get("adapter_flops_per_image"))
        if encoder and adapter is not None:
            row.adapter_ratios.append(adapter / encoder)
        params = _number(costs.get("trainable_params"))
        if params is None and source == "zero-shot":
            params = 0.0
        if params is not None:
            row.trainable_params.append(params)
    return sorted(rows.values(), key=row_sort_key(order))


def format_si(value: float | None, unit: str = "") -> str:
    """3 significant digits (trailing zeros kept) with a K/M/G/T/P prefix: 1.1e9 -> '1.10 G'."""
    if value is None:
        return MISSING
    if value == 0:
        return f"0 {unit}".strip()
    if abs(value) < 1000 and float(value).is_integer():
        return f"{int(value)} {unit}".strip()
    value = float(f"{value:.3g}")  # round before choosing the prefix: 999.6e3 -> 1.00 M
    scaled, prefix = value, ""
    for scale, p in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            scaled, prefix = value / scale, p
            break
    decimals = max(0, 2 - math.floor(math.log10(abs(scaled))))
    return f"{scaled:.{decimals}f} {prefix}{unit}".strip()


def format_seconds(seconds: float | None) -> str:
    """'12.3 s', '4.5 min', '2.3 h' (one decimal)."""
    if seconds is None:
        return MISSING
    if seconds == 0:
        return "0 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def format_percent(fraction: float | None) -> str:
    return MISSING if fraction is None else f"{100 * fraction:.2f} %"


def costs_markdown(rows: list[CostRow], level: int = 3, notes: bool = True) -> str:
    out = []
    hashes = "#" * level
    for setting in settings_of(rows):
        out.append(f"{hashes} {setting}\n")
        sub = [r for r in rows if r.setting == setting]
        for block in ([r for r in sub if not r.diagnostic], [r for r in sub if r.diagnostic]):
            if not block:
                continue
            if block[0].diagnostic:
                out.append("Diagnostics (not methods):\n")
            out += _cost_lines(block)
            out.append("")
    if notes:
        out.append(
            "Means over datasets × seeds. Training time: `costs.train_time_s` (zero-shot: 0); "
            f"{FALLBACK_MARK} from the run's training-like stage timings where that is missing. "
            "Inference FLOPs: the method's total per test image. Adapter / encoder: the adapter's FLOPs "
            "as a share of the image encoder's. –: not recorded."
        )
    return "\n".join(out) + "\n"


def _cost_lines(rows: list[CostRow]) -> list[str]:
    out = [
        "| Method | Training time | Inference FLOPs / image | Adapter / encoder FLOPs | "
        "Trainable params | Runs |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        time = format_seconds(r.train_time_s)
        if "timings" in r.train_time_sources:
            time += f" {FALLBACK_MARK}"
        out.append(
            f"| {md_cell(r.method)} | {time} | {format_si(r.inference_flops_per_image)} | "
            f"{format_percent(r.adapter_encoder_ratio)} | {format_si(r.trainable)} | {r.runs} |"
        )
    return out


COST_CSV_COLUMNS = [
    "setting",
    "method",
    "method_name",
    "runs",
    "train_time_s",
    "train_time_std_s",
    "train_time_source",
    "inference_flops_per_image",
    "adapter_encoder_flops_ratio",
    "trainable_params",
    "diagnostic",
]


def write_costs_csv(rows: list[CostRow], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COST_CSV_COLUMNS)
        for r in rows:
            w.writerow(
                [
                    r.setting,
                    r.method,
                    r.method_name or "",
                    r.runs,
                    *("" if v is None else round(v, 6) for v in (r.train_time_s, r.train_time_std_s)),
                    "+".join(sorted(r.train_time_sources)),
                    *(
                        "" if v is None else (round(v, 6) if v < 1e6 else round(v))
                        for v in (r.inference_flops_per_image, r.adapter_encoder_ratio, r.trainable)
                    ),
                    r.diagnostic or "",
                ]
            )
    return path
