"""Paper-style tables from results records.

Per (setting, dataset, method row): Base / Novel / HM as the mean ± std over seeds, HM computed from
the seed-averaged Base and Novel. Per (setting, method), when a setting has several
datasets: an Average row whose HM is the HM of the averaged Base and Novel, with the mean of
per-dataset HMs beside it, labelled. A re-run of the same (setting, dataset, row, seed) replaces the
older record (newest `created` wins; ties: the later one in the list).

Rows are ordered by setting (base2novel, base2base, fewshot), dataset (CoOp paper order, then
alphabetical, Average last) and method (canonical order, see `ordering`; `order="alphabetical"`
sorts by label). Diagnostic rows (records with `extra.diagnostic`, e.g. "TransMiter (no rotation)")
are not methods: each setting shows them in a Diagnostics table of their own under its main table.

    table = results_table(records)
    print(to_markdown(table)); write_csv(table, "results.csv")
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transmiter.evaluation.metrics import harmonic_mean
from transmiter.reporting.ordering import (
    dataset_sort_key,
    diagnostic_sort_key,
    method_sort_key,
    setting_sort_key,
)

AVERAGE = "Average"
MISSING = "–"
DIGITS = 2  # decimals of every accuracy in the Markdown tables


@dataclass
class Row:
    setting: str
    dataset: str
    method: str  # the row label shown in tables (record "row")
    protocol: str
    base: list[float] = field(default_factory=list)
    novel: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    mean_of_hms: float | None = None  # Average rows only
    method_name: str | None = None  # the method's config name (record "method"), for ordering
    datasets: list[str] = field(default_factory=list)  # Average rows: the datasets averaged
    diagnostic: str | None = None  # the record's `extra.diagnostic` (a diagnostic row, not a method)

    @property
    def base_mean(self) -> float | None:
        return statistics.fmean(self.base) if self.base else None

    @property
    def novel_mean(self) -> float | None:
        return statistics.fmean(self.novel) if self.novel else None

    @property
    def hm(self) -> float | None:
        b, n = self.base_mean, self.novel_mean
        return harmonic_mean(b, n) if b is not None and n is not None else None

    @property
    def score(self) -> float | None:
        """The headline number: HM when there are novel classes, else the (base) accuracy."""
        return self.hm if self.novel else self.base_mean

    @staticmethod
    def _std(values: list[float]) -> float | None:
        return statistics.stdev(values) if len(values) > 1 else None

    @property
    def base_std(self) -> float | None:
        return self._std(self.base)

    @property
    def novel_std(self) -> float | None:
        return self._std(self.novel)


def record_key(rec: dict[str, Any]) -> tuple:
    """What identifies one job: a re-run with the same key replaces the older record."""
    return (rec.get("setting"), rec.get("dataset"), row_label(rec), rec.get("seed"))


def row_label(rec: dict[str, Any]) -> str:
    return str(rec.get("row") or rec.get("method") or "unknown")


def diagnostic_of(rec: dict[str, Any]) -> str | None:
    """The kind of a diagnostic row (`extra.diagnostic`), None for a method's row."""
    kind = (rec.get("extra") or {}).get("diagnostic")
    return str(kind) if kind else None


def latest_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per job key, the newest (`created`, then position) winning; input order kept."""
    best: dict[tuple, tuple[str, int]] = {}
    records = list(records)
    for i, rec in enumerate(records):
        key, stamp = record_key(rec), (str(rec.get("created") or ""), i)
        if key not in best or stamp >= best[key]:
            best[key] = stamp
    keep = {i for _, i in best.values()}
    return [rec for i, rec in enumerate(records) if i in keep]


def row_sort_key(order: str = "canonical"):
    """Key for (setting, method) ordering of rows: canonical method order or alphabetical labels."""
    if order not in ("canonical", "alphabetical"):
        raise ValueError(f"order must be 'canonical' or 'alphabetical', got {order!r}")

    def key(r) -> tuple:
        if r.diagnostic:  # after every method row, in their own fixed order
            return (setting_sort_key(r.setting), (1, diagnostic_sort_key(r.diagnostic, r.method)))
        method = method_sort_key(r.method_name, r.method) if order == "canonical" else (0, r.method.lower())
        return (setting_sort_key(r.setting), (0, method))

    return key


def results_table(records: list[dict[str, Any]], order: str = "canonical") -> list[Row]:
    """Dataset rows followed, per setting and method, by the Average row (settings with ≥ 2 datasets)."""
    rows: dict[tuple, Row] = {}
    for rec in latest_records(records):
        metrics = rec.get("metrics") or {}
        if metrics.get("base") is None:  # a failed or partial run: nothing to tabulate
            continue
        key = (str(rec.get("setting") or "unknown"), str(rec.get("dataset") or "unknown"), row_label(rec))
        row = rows.get(key)
        if row is None:
            row = rows[key] = Row(
                *key,
                protocol=rec.get("protocol") or "",
                method_name=rec.get("method"),
                diagnostic=diagnostic_of(rec),
            )
        row.seeds.append(rec.get("seed"))  # type: ignore[arg-type]
        row.base.append(float(metrics["base"]))
        if metrics.get("novel") is not None:
            row.novel.append(float(metrics["novel"]))
    by_setting_key = row_sort_key(order)
    ordered = sorted(
        rows.values(),
        key=lambda r: (setting_sort_key(r.setting), dataset_sort_key(r.dataset), by_setting_key(r)),
    )
    datasets_of: dict[str, set[str]] = defaultdict(set)
    by_method: dict[tuple, list[Row]] = defaultdict(list)
    for r in ordered:
        datasets_of[r.setting].add(r.dataset)
        by_method[(r.setting, r.method)].append(r)
    averages = []
    for (setting, method), group in by_method.items():
        if len(datasets_of[setting]) < 2:
            continue
        protocols = {r.protocol for r in group}
        avg = Row(setting, AVERAGE, method, protocols.pop() if len(protocols) == 1 else "mixed")
        avg.method_name = group[0].method_name
        avg.diagnostic = group[0].diagnostic
        avg.datasets = [r.dataset for r in group]
        avg.base = [r.base_mean for r in group if r.base_mean is not None]  # type: ignore[misc]
        avg.novel = [r.novel_mean for r in group if r.novel_mean is not None]  # type: ignore[misc]
        hms = [r.hm for r in group if r.hm is not None]
        avg.mean_of_hms = statistics.fmean(hms) if hms else None
        avg.seeds = sorted({s for r in group for s in r.seeds if s is not None})
        averages.append(avg)
    averages.sort(key=by_setting_key)
    return sorted(ordered + averages, key=lambda r: (setting_sort_key(r.setting), r.dataset == AVERAGE))


def _fmt(mean: float | None, std: float | None = None, digits: int = DIGITS) -> str:
    if mean is None:
        return MISSING
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _seeds(seeds: list) -> str:
    known = sorted(s for s in seeds if s is not None)
    return ",".join(str(s) for s in known) if known else MISSING


def md_cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def settings_of(rows) -> list[str]:
    return sorted({r.setting for r in rows}, key=setting_sort_key)


def to_markdown(
    rows: list[Row],
    digits: int = DIGITS,
    level: int = 3,
    notes: bool = True,
    after_setting: dict[str, str] | None = None,
) -> str:
    """One table per setting under a heading of `level`; base2novel-style when there are novel scores.
    Diagnostic rows get a table of their own under the setting's; `after_setting[setting]` (Markdown,
    e.g. the regime lines) follows them."""
    out = []
    hashes = "#" * level
    for setting in settings_of(rows):
        sub = [r for r in rows if r.setting == setting]
        has_novel = any(r.novel for r in sub)
        n_datasets = len({r.dataset for r in sub if r.dataset != AVERAGE})
        out.append(f"{hashes} {setting}\n")
        main = [r for r in sub if not r.diagnostic]
        diagnostics = [r for r in sub if r.diagnostic]
        if main:
            out += _table_lines(main, has_novel, n_datasets, digits)
            out.append("")
        if diagnostics:
            out.append(
                "Diagnostics (not methods): the fitted adapter on the source itself, the source adapter on "
                "the target without rotation (Q = I), and an adapter fitted on the target's own fine-tuning.\n"
            )
            out += _table_lines(diagnostics, has_novel, n_datasets, digits)
            out.append("")
        if after_setting and after_setting.get(setting):
            out.append(after_setting[setting].rstrip("\n") + "\n")
    if notes:
        out.append("Top-1 accuracy (%), mean ± std over seeds.")
        if any(r.dataset == AVERAGE for r in rows):
            out.append(
                "Average rows: Base and Novel averaged over datasets; HM is the harmonic mean of those "
                "averages (the protocol's HM); the mean of the per-dataset HMs is shown beside it. "
                "(k/n): the method has results on k of the setting's n datasets."
            )
        if any(r.novel for r in rows):
            out.append(
                "Protocol `coop-separate`: base and novel classes are scored in separate label spaces; "
                "`masked-joint`: one head over all classes, the other group masked (TransMiter's reference)."
            )
    return "\n".join(out) + "\n"


def _table_lines(rows: list[Row], has_novel: bool, n_datasets: int, digits: int) -> list[str]:
    if has_novel:
        out = [
            "| Dataset | Method | Base | Novel | HM | HM (mean of per-dataset) | Seeds | Protocol |",
            "|---|---|---:|---:|---:|---:|---|---|",
        ]
    else:
        out = ["| Dataset | Method | Accuracy | Seeds |", "|---|---|---:|---|"]
    for r in rows:
        is_avg = r.dataset == AVERAGE
        name = md_cell(r.dataset)
        if is_avg:
            name = f"**{AVERAGE}**"
            if len(r.datasets) < n_datasets:
                name += f" ({len(r.datasets)}/{n_datasets})"
        b_std = None if is_avg else r.base_std
        n_std = None if is_avg else r.novel_std
        method = md_cell(r.method)
        if has_novel:
            mh = _fmt(r.mean_of_hms, digits=digits) if is_avg else ""
            out.append(
                f"| {name} | {method} | {_fmt(r.base_mean, b_std, digits)} | "
                f"{_fmt(r.novel_mean, n_std, digits)} | {_fmt(r.hm, digits=digits)} | {mh} | "
                f"{_seeds(r.seeds)} | {md_cell(r.protocol) or MISSING} |"
            )
        else:
            out.append(f"| {name} | {method} | {_fmt(r.base_mean, b_std, digits)} | {_seeds(r.seeds)} |")
    return out


CSV_COLUMNS = [
    "setting",
    "dataset",
    "method",
    "protocol",
    "base",
    "base_std",
    "novel",
    "novel_std",
    "hm",
    "hm_mean_of_datasets",
    "seeds",
    "method_name",
    "n_datasets",
    "diagnostic",
]


def write_csv(rows: list[Row], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow(
                [
                    r.setting,
                    r.dataset,
                    r.method,
                    r.protocol,
                    *(
                        ("" if v is None else round(v, 4))
                        for v in (r.base_mean, r.base_std, r.novel_mean, r.novel_std, r.hm, r.mean_of_hms)
                    ),
                    " ".join(str(s) for s in sorted(s for s in r.seeds if s is not None)),
                    r.method_name or "",
                    len(r.datasets) if r.dataset == AVERAGE else "",
                    r.diagnostic or "",
                ]
            )
    return path
