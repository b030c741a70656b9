"""The regimes study: how TransMiter's gain over the target's zero-shot depends on how far the fine-tuned
source is ahead of that zero-shot and on how well the two models' logits align, across synthetic worlds.

One point per transfer job (world, setting, pair, dataset, shots, seed), read from the study's records:

* gain = `TransMiter` - target zero-shot (per group: base, novel, hm), and `TransMiter+`'s the same way;
* lead = the source's fine-tuned row (the fine-tuner the transfer used, `extra.source_finetune`) - target
  zero-shot; `lead_val` is the same on the few-shot validation split of the training classes, from the
  pre-transfer guard (`extra.guard`), the only lead a user can see before transferring;
* the transfer figures (`extra.transfer_figures`): linear CKA, relative Procrustes residual before and
  after the rotation, ||Q - I||_F / sqrt(d) (d: the adapter's latent width, K by default);
* the decomposition by the diagnostic rows, which telescopes exactly in every group:

      gain = lead - imitation_gap + swap + rotation_effect
      imitation_gap   = source FT - TransMiter (source)             what the adapter fails to imitate
      swap            = TransMiter (no rotation) - TransMiter (source)   the same adapter on the target (Q = I)
      rotation_effect = TransMiter - TransMiter (no rotation)        what the Procrustes rotation adds
      headroom        = TransMiter (target oracle) - TransMiter      what an adapter fitted on the target's own
                                                                     fine-tuning would add (oracle_gain = gain + headroom)

A figure whose rows are missing is left empty and the point lists what it lacks (`missing`). The world of
a record is its config's `world.name` when the dataset is one of that world's benchmarks, else `none`
(real data or another benchmark).

    points = regime_points(records)
    write_points_csv(points, "points.csv"); print(study_markdown(points))
"""

from __future__ import annotations

import csv
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transmiter.reporting.ordering import dataset_sort_key, method_family, setting_sort_key
from transmiter.reporting.regime import pair_label
from transmiter.reporting.tables import MISSING, diagnostic_of, latest_records, source_of

GROUPS = ("base", "novel", "hm")
NO_WORLD = "none"  # a dataset outside its config's synthetic world (real data, a setting's own benchmark)
POOLED = "pooled"

# the rows a point reads: key -> what the missing list calls it
ROW_NAMES = {
    "target_zeroshot": "target zero-shot row",
    "source_finetuned": "source fine-tuned row",
    "transmiter": "TransMiter row",
    "transmiter_plus": "TransMiter+ row",
    "diag_source": "TransMiter (source) row",
    "diag_no_rotation": "TransMiter (no rotation) row",
    "diag_target_oracle": "TransMiter (target oracle) row",
}
DIAGNOSTIC_KEYS = {
    "source": "diag_source",
    "no_rotation": "diag_no_rotation",
    "target_oracle": "diag_target_oracle",
}
# derived figure -> (minuend row, subtrahend row), per group
DIFFERENCES = {
    "gain": ("transmiter", "target_zeroshot"),
    "plus_gain": ("transmiter_plus", "target_zeroshot"),
    "lead": ("source_finetuned", "target_zeroshot"),
    "imitation_gap": ("source_finetuned", "diag_source"),
    "swap": ("diag_no_rotation", "diag_source"),
    "rotation_effect": ("transmiter", "diag_no_rotation"),
    "headroom": ("diag_target_oracle", "transmiter"),
    "oracle_gain": ("diag_target_oracle", "target_zeroshot"),
}
TRANSFER_FIGURES = ("cka", "residual_before", "residual_after", "rotation_distance")
GUARD_FIGURES = ("source_finetuned_val", "target_zeroshot_val", "lead_val")


@dataclass
class RegimePoint:
    world: str
    setting: str
    pair: str
    dataset: str
    source_dataset: str
    shots: int | None
    seed: int | None
    finetuner: str | None  # the source fine-tuner's config name (`extra.source_finetune`)
    accuracies: dict[str, float] = field(default_factory=dict)  # "<row>_<group>" -> accuracy
    figures: dict[str, float] = field(default_factory=dict)  # derived, transfer and guard figures
    guard_fires: bool | None = None
    missing: list[str] = field(default_factory=list)

    def get(self, name: str) -> float | None:
        """A derived/transfer/guard figure or a raw accuracy by name; None when it could not be computed."""
        return self.figures.get(name, self.accuracies.get(name))

    @property
    def has_novel(self) -> bool:
        return self.accuracies.get("target_zeroshot_novel") is not None


class StudyInputError(ValueError):
    """The records given cannot make the study (none, no transfer job, an unknown world)."""


def world_of(rec: dict[str, Any]) -> str:
    """The synthetic world a record's dataset belongs to (`NO_WORLD` when it belongs to none)."""
    config = rec.get("config") or {}
    world = config.get("world") or {}
    name, datasets = world.get("name"), str(world.get("datasets") or "")
    dataset = config.get("dataset") or {}
    folder = dataset.get("folder") or dataset.get("name")
    members = {d.strip() for d in datasets.split(",") if d.strip()}
    return str(name) if name and folder in members else NO_WORLD


def _usable(rec: dict[str, Any]) -> bool:
    extra = rec.get("extra") or {}
    return (
        extra.get("role") in ("source", "target", "pair")
        and not extra.get("skipped")
        and rec.get("eval_split", "test") == "test"  # `[val]` rows are recipe selection, not results
    )


def _job_key(rec: dict[str, Any]) -> tuple:
    return (
        world_of(rec),
        str(rec.get("setting")),
        pair_label(rec) or MISSING,
        source_of(rec),
        str(rec.get("dataset")),
        rec.get("shots"),
        rec.get("seed"),
    )


def regime_points(records: Iterable[dict[str, Any]]) -> list[RegimePoint]:
    """One point per transfer job (a job with at least one `role: pair` row), sorted by world, setting,
    dataset and seed."""
    by_world: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        if _usable(rec):
            by_world[world_of(rec)].append(rec)
    jobs: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for recs in by_world.values():  # a re-run replaces its older record within its own world only
        for rec in latest_records(recs):
            jobs[_job_key(rec)].append(rec)
    points = [
        _point(key, recs) for key, recs in jobs.items() if any(r["extra"]["role"] == "pair" for r in recs)
    ]
    return sorted(
        points,
        key=lambda p: (
            p.world,
            setting_sort_key(p.setting),
            p.pair,
            p.shots or 0,
            dataset_sort_key(p.dataset),
            p.seed if p.seed is not None else -1,
        ),
    )


def _family(rec: dict[str, Any]) -> str | None:
    return method_family(rec.get("method")) or method_family(rec.get("row"))


def _pick(recs: list[dict[str, Any]], test: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
    """The first matching record by row label (one per job in a study; stable if a job ever has several)."""
    found = sorted((r for r in recs if test(r)), key=lambda r: str(r.get("row")))
    return found[0] if found else None


def _point(key: tuple, recs: list[dict[str, Any]]) -> RegimePoint:
    world, setting, pair, source, dataset, shots, seed = key
    pair_rows = [r for r in recs if r["extra"]["role"] == "pair"]
    methods = [r for r in pair_rows if not diagnostic_of(r)]
    rows: dict[str, dict[str, Any] | None] = {
        "transmiter": _pick(methods, lambda r: _family(r) == "transmiter"),
        "transmiter_plus": _pick(methods, lambda r: _family(r) == "transmiter+"),
        "target_zeroshot": _pick(recs, lambda r: r["extra"]["role"] == "target" and _family(r) == "zeroshot"),
    }
    for kind, name in DIAGNOSTIC_KEYS.items():
        rows[name] = _pick(pair_rows, lambda r, kind=kind: diagnostic_of(r) == kind)
    # the transfer's own rows first: their fine-tuner and figures describe this transfer
    transfer_rows = [r for r in (rows["transmiter"], rows["transmiter_plus"]) if r] + [
        r for r in pair_rows if r is not rows["transmiter"] and r is not rows["transmiter_plus"]
    ]
    finetuner = next(
        (str(r["extra"]["source_finetune"]) for r in transfer_rows if r["extra"].get("source_finetune")), None
    )
    rows["source_finetuned"] = (
        None
        if finetuner is None
        else _pick(recs, lambda r: r["extra"]["role"] == "source" and r.get("method") == finetuner)
    )
    point = RegimePoint(world, setting, pair, dataset, source, shots, seed, finetuner)
    if finetuner is None:
        point.missing.append("source fine-tuner (extra.source_finetune of the transfer rows)")
    for name, rec in rows.items():
        if rec is None:
            if name != "source_finetuned" or finetuner is not None:
                point.missing.append(
                    ROW_NAMES[name] + (f" ({finetuner})" if name == "source_finetuned" else "")
                )
            continue
        for group in GROUPS:
            value = (rec.get("metrics") or {}).get(group)
            if value is not None:
                point.accuracies[f"{name}_{group}"] = float(value)
    for figure, (a, b) in DIFFERENCES.items():
        for group in GROUPS:
            x, y = point.accuracies.get(f"{a}_{group}"), point.accuracies.get(f"{b}_{group}")
            if x is not None and y is not None:
                point.figures[f"{figure}_{group}"] = x - y
    _read_transfer_figures(point, transfer_rows)
    _read_guard(point, transfer_rows)
    return point


def _read_transfer_figures(point: RegimePoint, transfer_rows: list[dict[str, Any]]) -> None:
    figures = next(
        (r["extra"]["transfer_figures"] for r in transfer_rows if r["extra"].get("transfer_figures")), None
    )
    if figures is None:
        point.missing.append("transfer figures (extra.transfer_figures)")
        return
    for name in TRANSFER_FIGURES:
        value = figures.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            point.figures[name] = float(value)
        else:
            point.missing.append(f"transfer_figures.{name}")


def _read_guard(point: RegimePoint, transfer_rows: list[dict[str, Any]]) -> None:
    guard = next((r["extra"]["guard"] for r in transfer_rows if r["extra"].get("guard")), None)
    if guard is None:
        point.missing.append("validation lead (no extra.guard)")
        return
    if not guard.get("checked"):
        point.missing.append(f"validation lead (guard not checked: {guard.get('reason', 'no reason given')})")
        return
    source, target = guard.get("source_finetuned_val_acc"), guard.get("target_zeroshot_val_acc")
    if source is None or target is None:
        point.missing.append("validation lead (guard without its accuracies)")
        return
    point.figures.update(
        source_finetuned_val=float(source),
        target_zeroshot_val=float(target),
        lead_val=float(source) - float(target),
    )
    point.guard_fires = bool(guard.get("fires"))


# ------------------------------------------------------------------------------------------ statistics
def ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's r of the tie-averaged ranks); None below 3 pairs or when
    either side is constant."""
    if len(xs) != len(ys):
        raise ValueError(f"spearman needs paired values, got {len(xs)} and {len(ys)}")
    if len(xs) < 3:
        return None
    rx, ry = ranks(xs), ranks(ys)
    mx, my = statistics.fmean(rx), statistics.fmean(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return None if sxx == 0 or syy == 0 else sxy / math.sqrt(sxx * syy)


def paired(points: Iterable[RegimePoint], x: str, y: str) -> tuple[list[float], list[float]]:
    """The (x, y) figures of the points that have both."""
    pairs = [(p.get(x), p.get(y)) for p in points]
    kept = [(a, b) for a, b in pairs if a is not None and b is not None]
    return [a for a, _ in kept], [b for _, b in kept]


@dataclass
class Correlation:
    scope: str  # a world, or POOLED
    x: str
    y: str
    rho: float | None
    n: int


# (gain, against) pairs whose rank correlations the study reports
CORRELATIONS = (
    ("gain_base", "lead_base"),
    ("gain_base", "lead_val"),
    ("gain_base", "cka"),
    ("gain_novel", "lead_novel"),
    ("gain_novel", "cka"),
    ("gain_hm", "lead_hm"),
    ("gain_hm", "cka"),
)


def correlations(points: list[RegimePoint]) -> list[Correlation]:
    """Spearman's rho of each pair in CORRELATIONS per world and over all worlds (settings pooled: the
    novel and hm figures exist on base-to-novel points only)."""
    scopes = [(w, [p for p in points if p.world == w]) for w in worlds_of(points)]
    if len(scopes) > 1:
        scopes.append((POOLED, points))
    out = []
    for scope, sub in scopes:
        for y, x in CORRELATIONS:
            xs, ys = paired(sub, x, y)
            out.append(Correlation(scope, x, y, spearman(xs, ys), len(xs)))
    return out


def worlds_of(points: Iterable[RegimePoint]) -> list[str]:
    return sorted({p.world for p in points})


# ------------------------------------------------------------------------------------------ tables
def _mean_sd(values: list[float], digits: int = 2) -> str:
    if not values:
        return MISSING
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:+.{digits}f}"
    return f"{mean:+.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _values(points: Iterable[RegimePoint], name: str) -> list[float]:
    return [v for v in (p.get(name) for p in points) if v is not None]


def _cell(points: list[RegimePoint], name: str, digits: int = 2) -> str:
    return _mean_sd(_values(points, name), digits)


def _plain(points: list[RegimePoint], name: str, digits: int = 3) -> str:
    values = _values(points, name)
    if not values:
        return MISSING
    mean = statistics.fmean(values)
    return f"{mean:.{digits}f}" + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")


def _groups_present(points: list[RegimePoint]) -> list[str]:
    return [
        g
        for g in GROUPS
        if any(p.get(f"gain_{g}") is not None or p.get(f"lead_{g}") is not None for p in points)
    ]


def _by(points: list[RegimePoint], *fields: str) -> dict[tuple, list[RegimePoint]]:
    out: dict[tuple, list[RegimePoint]] = defaultdict(list)
    for p in points:
        out[tuple(getattr(p, f) for f in fields)].append(p)
    return out


def _scope_label(p: RegimePoint, several_pairs: bool, several_shots: bool) -> str:
    label = p.setting
    if several_pairs:
        label += f" ({p.pair})"
    if several_shots and p.shots is not None:
        label += f", {p.shots} shots"
    return label


def study_markdown(points: list[RegimePoint], level: int = 3, plot: str | None = None) -> str:
    """The study's tables: per (world, setting), the decomposition per group, per dataset, the rank
    correlations and what the points lack."""
    h = "#" * level
    several_pairs = len({p.pair for p in points}) > 1
    several_shots = len({p.shots for p in points}) > 1
    scope = lambda p: _scope_label(p, several_pairs, several_shots)  # noqa: E731
    n_datasets = len({(p.world, p.dataset) for p in points})
    out = [
        f"{len(points)} points (one per world × setting × dataset × seed; {n_datasets} datasets in "
        f"{len(worlds_of(points))} world(s)). Differences in accuracy points; mean ± s.d. over the points "
        "of a line. Gain = TransMiter − target zero-shot; lead = source fine-tuned − target zero-shot "
        "(validation lead: the same on the few-shot validation split of the classes trained on, from the "
        "pre-transfer guard); gain = lead − imitation gap + swap + rotation (exact per point), headroom = "
        "target oracle − TransMiter. Base/Acc.: base-class accuracy in base-to-novel, accuracy over all "
        "classes in settings without novel classes (base-to-base): the classes the models were tuned on.\n",
    ]
    if plot:
        out.append(f"![Gain over the target's zero-shot versus source lead and CKA]({plot})\n")
    out += [f"{h} Per world and setting\n"]
    out += [
        "| World | Setting | Points | Gain Base/Acc. | Gain Novel | Gain HM | Lead Base/Acc. | Lead Novel | "
        "Val. lead | CKA | Residual before | Residual after | ‖Q−I‖/√d | Guard fired | TransMiter+ gain Base/Acc. "
        "| TransMiter+ gain HM |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    groups = _by(points, "world", "setting", "pair", "shots")
    for key in _ordered(groups):
        sub = groups[key]
        fired = [p.guard_fires for p in sub if p.guard_fires is not None]
        out.append(
            f"| {key[0]} | {scope(sub[0])} | {len(sub)} | {_cell(sub, 'gain_base')} | {_cell(sub, 'gain_novel')} "
            f"| {_cell(sub, 'gain_hm')} | {_cell(sub, 'lead_base')} | {_cell(sub, 'lead_novel')} "
            f"| {_cell(sub, 'lead_val')} | {_plain(sub, 'cka')} | {_plain(sub, 'residual_before')} "
            f"| {_plain(sub, 'residual_after')} | {_plain(sub, 'rotation_distance')} "
            f"| {f'{sum(fired)}/{len(fired)}' if fired else MISSING} | {_cell(sub, 'plus_gain_base')} "
            f"| {_cell(sub, 'plus_gain_hm')} |"
        )
    out += [
        f"\n{h} Where the gain comes from\n",
        "Each line: lead − imitation gap + swap + rotation = gain (means; the identity holds per point, so "
        "also for means over the same points). Imitation gap = source FT − TransMiter (source); swap = "
        "TransMiter (no rotation) − TransMiter (source); rotation = TransMiter − TransMiter (no rotation). "
        "Losses: points where TransMiter is below the target's zero-shot (gain < 0).\n",
        "| World | Setting | Group | Lead | Imitation gap | Swap | Rotation | Gain | Losses | Headroom "
        "| Oracle gain |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in _ordered(groups):
        sub = groups[key]
        for g in _groups_present(sub):
            cells = [
                _cell(sub, f"{f}_{g}") for f in ("lead", "imitation_gap", "swap", "rotation_effect", "gain")
            ]
            cells.append(_losses(sub, g))
            cells += [_cell(sub, f"headroom_{g}"), _cell(sub, f"oracle_gain_{g}")]
            out.append(f"| {key[0]} | {scope(sub[0])} | {_group_label(g, sub)} | " + " | ".join(cells) + " |")
    out += [
        f"\n{h} Per dataset\n",
        "Mean ± s.d. over seeds.\n",
        "| World | Setting | Dataset | Group | Seeds | Lead | Imitation gap | Swap | Rotation | Gain | Headroom "
        "| Val. lead | CKA |",
        "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    datasets = _by(points, "world", "setting", "pair", "shots", "dataset")
    for key in _ordered(datasets):
        sub = datasets[key]
        seeds = ",".join(str(p.seed) for p in sub)
        for i, g in enumerate(_groups_present(sub)):
            cells = [
                _cell(sub, f"{f}_{g}")
                for f in ("lead", "imitation_gap", "swap", "rotation_effect", "gain", "headroom")
            ]
            shared = (_cell(sub, "lead_val"), _plain(sub, "cka")) if i == 0 else ("", "")
            out.append(
                f"| {key[0]} | {scope(sub[0])} | {key[-1]} | {_group_label(g, sub)} | {seeds} | "
                + " | ".join(cells)
                + f" | {shared[0]} | {shared[1]} |"
            )
    out += [
        f"\n{h} Rank correlations\n",
        "Spearman's ρ over points (n = points with both figures; settings pooled; seeds of one dataset share "
        "its zero-shot rows, so the points are not independent).\n",
        "| Scope | "
        + " | ".join(f"{_figure_label(y)} vs {_figure_label(x)}" for y, x in CORRELATIONS)
        + " |",
        "|---|" + "---:|" * len(CORRELATIONS),
    ]
    table = correlations(points)
    for world in [*worlds_of(points), POOLED]:
        cells = [c for c in table if c.scope == world]
        if cells:
            out.append(f"| {world} | " + " | ".join(_rho(c) for c in cells) + " |")
    out += missing_lines(points, level)
    return "\n".join(out) + "\n"


def _losses(points: list[RegimePoint], group: str) -> str:
    gains = _values(points, f"gain_{group}")
    return f"{sum(g < 0 for g in gains)}/{len(gains)}" if gains else MISSING


def _ordered(groups: dict[tuple, list[RegimePoint]]) -> list[tuple]:
    return sorted(
        groups,
        key=lambda k: (
            k[0],
            setting_sort_key(k[1]),
            k[2],
            k[3] or 0,
            *((dataset_sort_key(k[4]),) if len(k) > 4 else ()),
        ),
    )


def _group_label(group: str, points: list[RegimePoint] | None = None) -> str:
    """'Base' where the points have novel classes, 'Accuracy' where they have none (all classes tuned and
    scored, as in base-to-base), 'Base/Acc.' for a mix or no points."""
    if group != "base":
        return {"novel": "Novel", "hm": "HM"}[group]
    if points:
        with_novel = {p.has_novel for p in points}
        if with_novel == {True}:
            return "Base"
        if with_novel == {False}:
            return "Accuracy"
    return "Base/Acc."


def _figure_label(name: str) -> str:
    if name == "lead_val":
        return "val. lead"
    if name == "cka":
        return "CKA"
    figure, group = name.rsplit("_", 1)
    return f"{figure} {_group_label(group)}"


def _rho(c: Correlation) -> str:
    return MISSING if c.rho is None else f"{c.rho:+.2f} (n={c.n})"


def missing_lines(points: list[RegimePoint], level: int = 3) -> list[str]:
    """What the points lack, one line per missing item with how many points and an example."""
    lacking: dict[str, list[RegimePoint]] = defaultdict(list)
    for p in points:
        for item in p.missing:
            lacking[item].append(p)
    if not lacking:
        return []
    out = [f"\n{'#' * level} Missing\n"]
    for item, sub in sorted(lacking.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        p = sub[0]
        out.append(
            f"- {item}: {len(sub)} of {len(points)} points (e.g. {p.world} {p.setting} {p.dataset} seed {p.seed}); "
            "their figures that need it are left empty"
        )
    return out


# ------------------------------------------------------------------------------------------ CSV
POINT_COLUMNS = (
    "world",
    "setting",
    "pair",
    "dataset",
    "source_dataset",
    "shots",
    "seed",
    "finetuner",
    *(f"{f}_{g}" for f in DIFFERENCES for g in GROUPS),
    *GUARD_FIGURES,
    "guard_fires",
    *TRANSFER_FIGURES,
    *(f"{row}_{g}" for row in ROW_NAMES for g in GROUPS),
    "missing",
)


def point_row(p: RegimePoint) -> dict[str, Any]:
    """The point as one CSV row (POINT_COLUMNS; figures rounded to 4 decimals, absent ones empty)."""
    row: dict[str, Any] = {
        "world": p.world,
        "setting": p.setting,
        "pair": p.pair,
        "dataset": p.dataset,
        "source_dataset": p.source_dataset,
        "shots": p.shots,
        "seed": p.seed,
        "finetuner": p.finetuner,
        "guard_fires": p.guard_fires,
        "missing": "; ".join(p.missing),
    }
    for column in POINT_COLUMNS:
        if column not in row:
            value = p.get(column)
            row[column] = None if value is None else round(value, 4)
    return {k: "" if v is None else v for k, v in row.items()}


def write_points_csv(points: list[RegimePoint], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=POINT_COLUMNS)
        w.writeheader()
        w.writerows(point_row(p) for p in points)
    return path


def write_correlations_csv(table: list[Correlation], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["scope", "gain", "against", "spearman_rho", "n"])
        for c in table:
            w.writerow([c.scope, c.y, c.x, "" if c.rho is None else round(c.rho, 4), c.n])
    return path
