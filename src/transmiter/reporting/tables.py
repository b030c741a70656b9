"""Paper-style tables from results records.

Per (setting, dataset, method row): Base / Novel / HM as the mean ± std over seeds, HM computed from
the seed-averaged Base and Novel. Per (setting, method), when a setting has several
datasets: an Average row whose HM is the HM of the averaged Base and Novel, with the mean of
per-dataset HMs beside it, labelled. A re-run of the same (setting, dataset, row, seed) replaces the
older record (newest `created` wins; ties: the later one in the list).

Rows are ordered by setting (base2novel, base2base, fewshot, cross_dataset, domain_generalization),
shots, dataset (CoOp paper order, then alphabetical, Average last) and method (canonical order, see
`ordering`; `order="alphabetical"` sorts by label). Diagnostic rows (records with `extra.diagnostic`, e.g.
"TransMiter (no rotation)") are not methods: each setting shows them in a Diagnostics table of their own
under its main table.

Each setting gets the layout of its papers' tables:
* several shots (the few-shot study): one column per shots value, a row per (dataset, method), Average rows
  per shots value; `plots.plot_shot_curves` draws the same numbers as accuracy-versus-shots curves;
* targets (cross-dataset, domain generalisation: records whose `dataset` is not their `source_dataset`):
  one row per method, the source column, one column per target and the Average over the targets only;
* otherwise Dataset | Method | Base | Novel | HM (base-to-novel) or Accuracy.

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
    shots: int | None = None  # the record's shots
    source: str | None = None  # the dataset the models trained on (`source_dataset`; = dataset if absent)

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
    return (
        rec.get("setting"),
        source_of(rec),
        rec.get("dataset"),
        row_label(rec),
        rec.get("shots"),
        rec.get("seed"),
    )


def source_of(rec: dict[str, Any]) -> str:
    """The dataset a record's models trained on (records before settings had targets: its dataset)."""
    return str(rec.get("source_dataset") or rec.get("dataset") or "unknown")


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
        shots = rec.get("shots")
        full_key = (*key, shots, source_of(rec))
        row = rows.get(full_key)
        if row is None:
            row = rows[full_key] = Row(
                *key,
                protocol=rec.get("protocol") or "",
                method_name=rec.get("method"),
                diagnostic=diagnostic_of(rec),
                shots=shots,
                source=source_of(rec),
            )
        row.seeds.append(rec.get("seed"))  # type: ignore[arg-type]
        row.base.append(float(metrics["base"]))
        if metrics.get("novel") is not None:
            row.novel.append(float(metrics["novel"]))
    by_setting_key = row_sort_key(order)
    ordered = sorted(
        rows.values(),
        key=lambda r: (
            setting_sort_key(r.setting),
            r.shots or 0,
            dataset_sort_key(r.dataset),
            by_setting_key(r),
        ),
    )
    with_targets = {r.setting for r in ordered if r.dataset != r.source}
    datasets_of: dict[tuple, set[str]] = defaultdict(set)
    by_method: dict[tuple, list[Row]] = defaultdict(list)
    for r in ordered:
        if r.setting in with_targets and r.dataset == r.source:
            continue  # a setting with targets averages its targets; the source has its own column
        source = r.source if r.setting in with_targets else None  # elsewhere each dataset is its own
        datasets_of[(r.setting, source, r.shots)].add(r.dataset)
        by_method[(r.setting, source, r.shots, r.method)].append(r)
    averages = []
    for (setting, source, shots, method), group in by_method.items():
        if len(datasets_of[(setting, source, shots)]) < 2:
            continue
        protocols = {r.protocol for r in group}
        avg = Row(setting, AVERAGE, method, protocols.pop() if len(protocols) == 1 else "mixed")
        avg.method_name = group[0].method_name
        avg.diagnostic = group[0].diagnostic
        avg.shots, avg.source = shots, source
        avg.datasets = [r.dataset for r in group]
        avg.base = [r.base_mean for r in group if r.base_mean is not None]  # type: ignore[misc]
        avg.novel = [r.novel_mean for r in group if r.novel_mean is not None]  # type: ignore[misc]
        hms = [r.hm for r in group if r.hm is not None]
        avg.mean_of_hms = statistics.fmean(hms) if hms else None
        avg.seeds = sorted({s for r in group for s in r.seeds if s is not None})
        averages.append(avg)
    averages.sort(key=lambda r: (r.shots or 0, by_setting_key(r)))
    return sorted(ordered + averages, key=lambda r: (setting_sort_key(r.setting), r.dataset == AVERAGE))


def has_targets(rows: list[Row]) -> bool:
    """Whether these rows (of one setting) score datasets other than the one their models trained on."""
    return any(r.dataset not in (AVERAGE, r.source) for r in rows)


def shot_values(rows: list[Row]) -> list[int]:
    return sorted({r.shots for r in rows if r.shots is not None})


def layout_of(rows: list[Row]) -> str:
    """'targets' (source + target columns), 'shots' (one column per shots value) or 'groups'."""
    if has_targets(rows):
        return "targets"
    return "shots" if len(shot_values(rows)) > 1 else "groups"


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
    layouts_of: dict[str, str] = {}
    for setting in settings_of(rows):
        sub = [r for r in rows if r.setting == setting]
        layout = layouts_of[setting] = layout_of(sub)
        has_novel = any(r.novel for r in sub)
        n_datasets = len({r.dataset for r in sub if r.dataset != AVERAGE})
        out.append(f"{hashes} {setting}\n")
        main = [r for r in sub if not r.diagnostic]
        diagnostics = [r for r in sub if r.diagnostic]

        if main:
            out += _setting_lines(main, layout, sub, has_novel, n_datasets, digits)
            out.append("")
        if diagnostics:
            out.append(
                "Diagnostics (not methods): the fitted adapter on the source itself, the source adapter on "
                "the target without rotation (Q = I), and an adapter fitted on the target's own fine-tuning.\n"
            )
            out += _setting_lines(diagnostics, layout, sub, has_novel, n_datasets, digits)
            out.append("")
        if after_setting and after_setting.get(setting):
            out.append(after_setting[setting].rstrip("\n") + "\n")
    if notes:
        layouts = set(layouts_of.values())
        out.append("Top-1 accuracy (%), mean ± std over seeds.")
        if "targets" in layouts or "shots" in layouts:
            out.append(
                "Tables with one column per scored dataset or per shots value show means over seeds; the "
                "standard deviations are in results.csv."
            )
        if "targets" in layouts:
            out.append(
                "Source + targets: the models trained on the source dataset (first column) are scored with "
                "no further training on each target; Average is the mean over the targets, the source "
                "excluded. (k/n): the method has results on k of the n targets."
            )
        if "shots" in layouts:
            out.append("Shots: K labelled images per class for training; Average rows: mean over datasets.")
        if any(r.dataset == AVERAGE for r in rows if layouts_of[r.setting] == "groups"):
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


def _setting_lines(
    part: list[Row], layout: str, setting_rows: list[Row], has_novel: bool, n_datasets: int, digits: int
) -> list[str]:
    """The table of `part` (a setting's method or diagnostic rows) in the setting's layout."""
    if layout == "targets":
        return _target_lines(part, digits)
    if layout == "shots":
        return _shot_lines(part, shot_values(setting_rows), digits)
    return _table_lines(part, has_novel, n_datasets, digits)


def _target_lines(rows: list[Row], digits: int) -> list[str]:
    """Source + targets + Average, one row per method (and per source when there are several)."""
    sources = sorted({r.source for r in rows if r.source}, key=dataset_sort_key)
    targets = sorted({r.dataset for r in rows if r.dataset not in (AVERAGE, r.source)}, key=dataset_sort_key)
    several = len(sources) > 1
    out = [
        "| Method | "
        + ("Source | " if several else "")
        + " | ".join(
            [f"{md_cell(sources[0])} (source)" if not several else "Source accuracy"]
            + [md_cell(t) for t in targets]
            + [f"**{AVERAGE}**"]
        )
        + " | Seeds |",
        "|---|" + ("---|" if several else "") + "---:|" * (len(targets) + 2) + "---|",
    ]
    for source in sources:
        cells: dict[str, dict[str, Row]] = defaultdict(dict)
        for r in rows:
            if r.source == source:
                cells[r.method][r.dataset] = r
        for method, by_dataset in cells.items():
            avg = by_dataset.get(AVERAGE)
            average = _fmt(avg.base_mean if avg else None, digits=digits)
            if avg and len(avg.datasets) < len(targets):
                average += f" ({len(avg.datasets)}/{len(targets)})"
            values = [by_dataset.get(source)] + [by_dataset.get(t) for t in targets]
            seeds = sorted({s for r in by_dataset.values() for s in r.seeds if s is not None})
            out.append(
                f"| {md_cell(method)} | "
                + (f"{md_cell(source)} | " if several else "")
                + " | ".join(_fmt(r.base_mean if r else None, digits=digits) for r in values)
                + f" | {average} | {_seeds(seeds)} |"
            )
    return out


def _shot_lines(rows: list[Row], shots: list[int], digits: int) -> list[str]:
    """One column per shots value; a row per (dataset, method), the Average rows last."""
    out = [
        "| Dataset | Method | " + " | ".join(f"{k} shot{'s' if k > 1 else ''}" for k in shots) + " | Seeds |",
        "|---|---|" + "---:|" * len(shots) + "---|",
    ]
    cells: dict[tuple, dict[int | None, Row]] = defaultdict(dict)
    for r in rows:  # already ordered: datasets (Average last), then methods
        cells[(r.dataset, r.method)][r.shots] = r
    for (dataset, method), by_shots in cells.items():
        name = f"**{AVERAGE}**" if dataset == AVERAGE else md_cell(dataset)
        seeds = sorted({s for r in by_shots.values() for s in r.seeds if s is not None})
        values = [by_shots.get(k) for k in shots]
        out.append(
            f"| {name} | {md_cell(method)} | "
            + " | ".join(_fmt(r.base_mean if r else None, digits=digits) for r in values)
            + f" | {_seeds(seeds)} |"
        )
    return out


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
    "shots",
    "source_dataset",
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
                    "" if r.shots is None else r.shots,
                    r.source or "",
                ]
            )
    return path
