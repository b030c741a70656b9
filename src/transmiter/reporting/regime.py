"""The regime of each transfer: what fine-tuning gives each model, how far apart the two models start and
how well their logits align. One line per (setting, pair, dataset), averaged over seeds like table rows.

Read from the records of study jobs (rows carrying `extra.role`), per job (setting, dataset, seed, pair):
* FT gain of a model, per group (base, novel): its fine-tuned row minus its zero-shot row, with the
  fine-tuner the transfer rows used for their source (`extra.source_finetune`, e.g. skip_tuning);
* zero-shot gap: the target's zero-shot minus the source's (strong - weak), per group;
* alignment: `extra.transfer_figures.cka` of the job's transfer rows (linear CKA of the two models'
  standardised logits on the fitting set).
A job without a transfer row, or without the zero-shot / fine-tuned rows of a model, gives no figure for
what it lacks. Settings with several datasets get an Average line (mean of the per-dataset means).

    lines = regime_lines(records)
    print(regime_markdown(lines, "base2novel")); write_regime_csv(lines, "regime.csv")
"""

from __future__ import annotations

import csv
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transmiter.models.labels import node_label
from transmiter.reporting.ordering import dataset_sort_key, method_family, setting_sort_key
from transmiter.reporting.tables import AVERAGE, MISSING, diagnostic_of, latest_records, source_of

GROUPS = ("base", "novel")
FIGURES = (
    "source_ft_gain_base",
    "source_ft_gain_novel",
    "target_ft_gain_base",
    "target_ft_gain_novel",
    "zeroshot_gap_base",
    "zeroshot_gap_novel",
    "cka",
)


@dataclass
class RegimeLine:
    setting: str
    pair: str  # "source→target" labels
    dataset: str
    finetuner: str  # label of the fine-tuner behind the gains, e.g. "Skip Tuning"
    values: dict[str, list[float]] = field(default_factory=dict)  # figure -> one value per seed (or dataset)
    seeds: list[int] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)  # Average lines: the datasets averaged
    shots: int | None = None
    source: str | None = None  # the dataset the models trained on (a setting with targets scores others)

    def mean(self, figure: str) -> float | None:
        values = self.values.get(figure)
        return statistics.fmean(values) if values else None


def pair_label(rec: dict[str, Any]) -> str | None:
    """'source→target' from the record's resolved pair config (model `name`, else `arch`)."""
    pair = (rec.get("config") or {}).get("pair") or {}
    labels = [node_label(pair.get(role) or {}) for role in ("source", "target")]
    return "→".join(labels) if all(labels) else None  # type: ignore[arg-type]


def _model_label(rec: dict[str, Any], role: str) -> str | None:
    return node_label(((rec.get("config") or {}).get("pair") or {}).get(role) or {})


def _finetuner_label(name: str, ft_rec: dict[str, Any] | None, role: str) -> str:
    """The fine-tuner's row label without the model ("Skip Tuning"), else its config name."""
    if ft_rec is not None:
        row, model = str(ft_rec.get("row") or ""), _model_label(ft_rec, role)
        if model and row.endswith(f" {model}"):
            return row[: -len(model) - 1]
    return name


def _transfer_info(pair_rows: list[dict[str, Any]]) -> tuple[str | None, float | None]:
    """(the source fine-tuner's config name, the CKA) from a job's transfer rows, TransMiter's first."""
    ordered = sorted(
        pair_rows, key=lambda r: (method_family(r.get("method")) != "transmiter", bool(diagnostic_of(r)))
    )
    finetuner = next(
        (r["extra"]["source_finetune"] for r in ordered if r["extra"].get("source_finetune")), None
    )
    cka = next(
        (
            float(r["extra"]["transfer_figures"]["cka"])
            for r in ordered
            if (r["extra"].get("transfer_figures") or {}).get("cka") is not None
        ),
        None,
    )
    return finetuner, cka


def regime_lines(records: list[dict[str, Any]]) -> list[RegimeLine]:
    """Regime lines per (setting, pair, dataset), then an Average line per (setting, pair, fine-tuner)
    when the setting has several datasets."""
    jobs: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for rec in latest_records(records):
        extra = rec.get("extra") or {}
        pair = pair_label(rec)
        if extra.get("role") not in ("source", "target", "pair") or pair is None or extra.get("skipped"):
            continue
        if (rec.get("metrics") or {}).get("base") is None:
            continue
        key = (str(rec.get("setting")), str(rec.get("dataset")), pair, rec.get("shots"), source_of(rec))
        jobs[(*key, rec.get("seed"))].append(rec)
    lines: dict[tuple, RegimeLine] = {}
    for (setting, dataset, pair, shots, source, seed), recs in jobs.items():
        finetuner, cka = _transfer_info([r for r in recs if r["extra"]["role"] == "pair"])
        if finetuner is None:  # no transfer row in this job: no transfer regime to describe
            continue
        zeroshot = {
            r["extra"]["role"]: r
            for r in recs
            if r["extra"]["role"] != "pair"
            and (method_family(r.get("method")) or method_family(r.get("row"))) == "zeroshot"
        }
        tuned = {
            r["extra"]["role"]: r
            for r in recs
            if r["extra"]["role"] != "pair" and r.get("method") == finetuner
        }
        values: dict[str, float] = {}
        for group in GROUPS:
            for role in ("source", "target"):
                value = _difference(tuned.get(role), zeroshot.get(role), group)
                if value is not None:
                    values[f"{role}_ft_gain_{group}"] = value
            gap = _difference(zeroshot.get("target"), zeroshot.get("source"), group)
            if gap is not None:
                values[f"zeroshot_gap_{group}"] = gap
        if cka is not None:
            values["cka"] = cka
        label = _finetuner_label(finetuner, tuned.get("source"), "source")
        line = lines.setdefault(
            (setting, pair, dataset, label, shots, source),
            RegimeLine(setting, pair, dataset, label, shots=shots, source=source),
        )
        line.seeds.append(seed)
        for name, value in values.items():
            line.values.setdefault(name, []).append(value)
    ordered = sorted(
        lines.values(),
        key=lambda x: (setting_sort_key(x.setting), x.pair, x.shots or 0, dataset_sort_key(x.dataset)),
    )
    return ordered + _averages(ordered)


def _difference(a: dict[str, Any] | None, b: dict[str, Any] | None, group: str) -> float | None:
    if a is None or b is None:
        return None
    x, y = (a.get("metrics") or {}).get(group), (b.get("metrics") or {}).get(group)
    return None if x is None or y is None else float(x) - float(y)


def _averages(lines: list[RegimeLine]) -> list[RegimeLine]:
    datasets_of: dict[tuple, set[str]] = defaultdict(set)
    groups: dict[tuple, list[RegimeLine]] = defaultdict(list)
    with_targets = {x.setting for x in lines if x.source not in (None, x.dataset)}
    for line in lines:
        if line.setting in with_targets and line.dataset == line.source:
            continue  # a setting with targets averages its targets, as its table does
        datasets_of[(line.setting, line.shots)].add(line.dataset)
        source = line.source if line.setting in with_targets else None  # elsewhere each dataset is its own
        groups[(line.setting, line.pair, line.finetuner, line.shots, source)].append(line)
    out = []
    for (setting, pair, finetuner, shots, source), group in groups.items():
        if len(datasets_of[(setting, shots)]) < 2:
            continue
        avg = RegimeLine(
            setting, pair, AVERAGE, finetuner, datasets=[x.dataset for x in group], shots=shots, source=source
        )
        for name in FIGURES:
            means = [m for m in (x.mean(name) for x in group) if m is not None]
            if means:
                avg.values[name] = means
        avg.seeds = sorted({s for x in group for s in x.seeds if s is not None})
        out.append(avg)
    return out


def _signed(value: float | None, digits: int = 2) -> str:
    return MISSING if value is None else f"{value:+.{digits}f}"


def _pair_of(line: RegimeLine, figure: str, has_novel: bool) -> str:
    base = _signed(line.mean(f"{figure}_base"))
    return f"{base} base / {_signed(line.mean(f'{figure}_novel'))} novel" if has_novel else base


def regime_markdown(lines: list[RegimeLine], setting: str) -> str:
    """The setting's regime lines as a Markdown list ('' when it has none)."""
    sub = [x for x in lines if x.setting == setting]
    if not sub:
        return ""
    has_novel = any(
        x.mean("source_ft_gain_novel") is not None or x.mean("zeroshot_gap_novel") is not None for x in sub
    )
    out = [
        "Regime: FT gain = fine-tuned minus zero-shot accuracy of the same model (with the transfer's "
        "fine-tuner); zero-shot gap = target minus source; CKA = linear CKA of the two models' standardised "
        "logits on the fitting set; means over seeds.\n"
    ]
    several_shots = len({x.shots for x in sub}) > 1
    for x in sub:
        where = f"**{AVERAGE}** of {len(x.datasets)} datasets" if x.dataset == AVERAGE else x.dataset
        if several_shots:
            where += f", {x.shots} shot{'s' if x.shots != 1 else ''}"
        seeds = ",".join(str(s) for s in sorted(s for s in x.seeds if s is not None)) or MISSING
        cka = x.mean("cka")
        out.append(
            f"- {x.pair}, {where} ({x.finetuner}; seeds {seeds}): FT gain source "
            f"{_pair_of(x, 'source_ft_gain', has_novel)}, target {_pair_of(x, 'target_ft_gain', has_novel)}; "
            f"zero-shot gap {_pair_of(x, 'zeroshot_gap', has_novel)}; "
            f"CKA {MISSING if cka is None else f'{cka:.3f}'}"
        )
    return "\n".join(out) + "\n"


REGIME_CSV_COLUMNS = [
    "setting",
    "pair",
    "dataset",
    "finetuner",
    *FIGURES,
    "seeds",
    "n_datasets",
    "shots",
    "source_dataset",
]


def write_regime_csv(lines: list[RegimeLine], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(REGIME_CSV_COLUMNS)
        for x in lines:
            w.writerow(
                [
                    x.setting,
                    x.pair,
                    x.dataset,
                    x.finetuner,
                    *("" if x.mean(name) is None else round(x.mean(name), 4) for name in FIGURES),  # type: ignore[arg-type]
                    " ".join(str(s) for s in sorted(s for s in x.seeds if s is not None)),
                    len(x.datasets) if x.dataset == AVERAGE else "",
                    "" if x.shots is None else x.shots,
                    x.source or "",
                ]
            )
    return path
