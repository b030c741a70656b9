"""Paper-style tables from results records.

Per (setting, dataset, method row): Base / Novel / HM as the mean ± std over seeds, HM computed from
the seed-averaged Base and Novel (protocol.md §3). Per (setting, method): an Average row whose HM is
the HM of the averaged Base and Novel, with the mean of per-dataset HMs beside it, labelled.

    table = results_table(records)
    print(to_markdown(table)); write_csv(table, "results.csv")
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transmiter.evaluation.metrics import harmonic_mean

AVERAGE = "Average"


@dataclass
class Row:
    setting: str
    dataset: str
    method: str
    protocol: str
    base: list[float] = field(default_factory=list)
    novel: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    mean_of_hms: float | None = None  # Average rows only

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

    @staticmethod
    def _std(values: list[float]) -> float | None:
        return statistics.stdev(values) if len(values) > 1 else None

    @property
    def base_std(self) -> float | None:
        return self._std(self.base)

    @property
    def novel_std(self) -> float | None:
        return self._std(self.novel)


def results_table(records: list[dict[str, Any]]) -> list[Row]:
    """Dataset rows (sorted) followed, per setting and method, by the Average row."""
    rows: dict[tuple, Row] = {}
    for rec in records:
        key = (rec["setting"], rec["dataset"], rec["row"])
        row = rows.setdefault(key, Row(rec["setting"], rec["dataset"], rec["row"], rec.get("protocol", "")))
        if rec["seed"] in row.seeds:  # a re-run of the same job: keep the newest
            idx = row.seeds.index(rec["seed"])
            for values in (row.base, row.novel):
                if idx < len(values):
                    values.pop(idx)
            row.seeds.pop(idx)
        row.seeds.append(rec["seed"])
        row.base.append(rec["metrics"]["base"])
        if "novel" in rec["metrics"]:
            row.novel.append(rec["metrics"]["novel"])
    ordered = sorted(rows.values(), key=lambda r: (r.setting, r.dataset, r.method))
    averages = []
    by_method: dict[tuple, list[Row]] = defaultdict(list)
    for r in ordered:
        by_method[(r.setting, r.method)].append(r)
    for (setting, method), group in sorted(by_method.items()):
        if len({r.dataset for r in group}) < 2:
            continue
        avg = Row(setting, AVERAGE, method, group[0].protocol)
        avg.base = [r.base_mean for r in group if r.base_mean is not None]  # type: ignore[misc]
        avg.novel = [r.novel_mean for r in group if r.novel_mean is not None]  # type: ignore[misc]
        hms = [r.hm for r in group if r.hm is not None]
        avg.mean_of_hms = statistics.fmean(hms) if hms else None
        avg.seeds = sorted({s for r in group for s in r.seeds})
        averages.append(avg)
    return ordered + averages


def _fmt(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "–"
    return f"{mean:.2f}" if std is None else f"{mean:.2f} ± {std:.2f}"


def to_markdown(rows: list[Row]) -> str:
    out = []
    for setting in sorted({r.setting for r in rows}):
        sub = [r for r in rows if r.setting == setting]
        has_novel = any(r.novel for r in sub)
        out.append(f"### {setting}\n")
        if has_novel:
            out.append(
                "| Dataset | Method | Base | Novel | HM | HM (mean of per-dataset) | Seeds | Protocol |"
            )
            out.append("|---|---|---|---|---|---|---|---|")
        else:
            out.append("| Dataset | Method | Accuracy | Seeds |")
            out.append("|---|---|---|---|")
        for r in sub:
            is_avg = r.dataset == AVERAGE
            name = f"**{r.dataset}**" if is_avg else r.dataset
            b_std = None if is_avg else r.base_std
            n_std = None if is_avg else r.novel_std
            seeds = ",".join(str(s) for s in sorted(r.seeds))
            if has_novel:
                mh = _fmt(r.mean_of_hms) if is_avg else ""
                out.append(
                    f"| {name} | {r.method} | {_fmt(r.base_mean, b_std)} | {_fmt(r.novel_mean, n_std)} | "
                    f"{_fmt(r.hm)} | {mh} | {seeds} | {r.protocol} |"
                )
            else:
                out.append(f"| {name} | {r.method} | {_fmt(r.base_mean, b_std)} | {seeds} |")
        out.append("")
    if any(r.dataset == AVERAGE for r in rows):
        out.append(
            "Average rows: Base and Novel averaged over datasets; HM is the harmonic mean of those "
            "averages (protocol.md §3); the mean of the per-dataset HMs is shown beside it."
        )
    out.append(
        "Protocol `coop-separate`: base and novel classes are scored in separate label spaces; "
        "`masked-joint`: one head over all classes, the other group masked (TransMiter's reference)."
    )
    return "\n".join(out) + "\n"


def write_csv(rows: list[Row], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
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
            ]
        )
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
                    " ".join(str(s) for s in sorted(r.seeds)),
                ]
            )
    return path
