"""Plots of a results table (matplotlib, Agg backend).

plot_results(rows, "results.png")                   # grouped Base / Novel / HM (or accuracy) bars per method
plot_cost_scatter(rows, cost_rows, "cost_scatter.png")  # HM (or accuracy) versus training time per method
plot_shot_curves(rows, "fewshot_curves.png")        # accuracy versus shots, a panel per dataset + average
plot_regimes(points, "regimes.png")                 # TransMiter's gain versus source lead and CKA (regimes study)

One panel per setting, showing its Average row when it has several datasets, else its one dataset (a
setting with several shots values: its largest); method rows only (diagnostic rows stay in the tables).
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

from transmiter.reporting.ordering import dataset_sort_key, setting_sort_key
from transmiter.reporting.tables import AVERAGE, Row, shot_values

SERIES_COLORS = {"Base": "#4C72B0", "Novel": "#DD8452", "HM": "#55A868", "Accuracy": "#4C72B0"}
LOG_RANGE = 30.0  # use a log x axis when max/min training time exceeds this
DPI = 150
LABEL_GAP = 3.0  # display units kept free around each scatter label
SETTING_MARKERS = "osD^vP*X"  # marker per setting (regimes plot), in setting order
# base-to-base's one accuracy shares the base panel: both are the classes the models were tuned on
GROUP_WORDS = {"base": "tuned classes (base; base2base: all)", "novel": "novel classes"}

if TYPE_CHECKING:
    from transmiter.reporting.regimes_study import RegimePoint


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def focus_rows(rows: list[Row]) -> dict[str, tuple[str, list[Row]]]:
    """Per setting (canonical order): (dataset shown, its method rows) — the Average rows when there are
    any. Diagnostic rows are left out."""
    rows = [r for r in rows if not r.diagnostic]
    out = {}
    for setting in sorted({r.setting for r in rows}, key=setting_sort_key):
        sub = [r for r in rows if r.setting == setting]
        shots = shot_values(sub)
        if len(shots) > 1:  # the few-shot curves show every shots value; the bars its largest
            sub = [r for r in sub if r.shots == shots[-1]]
        datasets = {r.dataset for r in sub}
        focus = AVERAGE if AVERAGE in datasets else sorted(datasets)[0]
        out[setting] = (focus, [r for r in sub if r.dataset == focus])
    return out


def _panel_title(setting: str, focus: str, sub: list[Row]) -> str:
    shots = f", {sub[0].shots} shots" if sub and setting == "fewshot" and sub[0].shots else ""
    if focus == AVERAGE:
        n = len({d for r in sub for d in r.datasets})
        return f"{setting} — average over {n} datasets{shots}"
    return f"{setting} — {focus}{shots}"


def _wrap(label: str, width: int) -> str:
    """Wrap at spaces and after arrows (not at hyphens): 'EFT synth-weak→' / 'synth-strong'."""
    text = textwrap.fill(
        label.replace("→", "→ "), width=width, break_long_words=False, break_on_hyphens=False
    )
    return text.replace("→ ", "→")


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _save_with_legend_above(fig, handles, labels: list[str], max_columns: int, path: str | Path) -> Path:
    """One legend for all panels, above them; then save and close the figure."""
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(max_columns, max(1, len(labels))),
        fontsize=8,
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
    )
    fig.tight_layout()
    out = _save(fig, path)
    _pyplot().close(fig)
    return out


def plot_results(rows: list[Row], path: str | Path) -> Path:
    """Grouped bars, one panel (row of the figure) per setting, values printed on the bars."""
    plt = _pyplot()
    panels = focus_rows(rows)
    n_methods = max((len(sub) for _, sub in panels.values()), default=1)
    width_in = max(6.0, 1.0 * n_methods + 1.5)
    fig, axes = plt.subplots(len(panels), 1, figsize=(width_in, 4.4 * len(panels)), squeeze=False)
    for ax, (setting, (focus, sub)) in zip(axes[:, 0], panels.items()):
        methods = [r.method for r in sub]
        if any(r.novel for r in sub):
            series = [
                ("Base", [r.base_mean for r in sub]),
                ("Novel", [r.novel_mean for r in sub]),
                ("HM", [r.hm for r in sub]),
            ]
        else:
            series = [("Accuracy", [r.base_mean for r in sub])]
        width = 0.8 / len(series)
        vertical = len(series) > 1  # three 4-character labels do not fit side by side over a method
        for i, (label, values) in enumerate(series):
            pts = [
                (j + (i - (len(series) - 1) / 2) * width, v) for j, v in enumerate(values) if v is not None
            ]
            if not pts:
                continue
            bars = ax.bar(
                [x for x, _ in pts],
                [v for _, v in pts],
                width * 0.92,
                label=label,
                color=SERIES_COLORS[label],
            )
            ax.bar_label(bars, fmt="%.1f", fontsize=7.5, padding=2, rotation=90 if vertical else 0)
        ax.set_xticks(range(len(methods)), [_wrap(m, 13) for m in methods], fontsize=8.5)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_ylim(0, 112 if vertical else 106)
        ax.set_yticks(range(0, 101, 20))
        ax.set_title(_panel_title(setting, focus, sub), pad=22, fontsize=11)
        ax.legend(
            fontsize=8.5, ncol=len(series), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False
        )
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    out = _save(fig, path)
    plt.close(fig)
    return out


def _x_axis(ax, xs: list[float]) -> list[float]:
    """Choose the x scale; returns the positions to plot (0 s drawn one decade left of the log axis)."""
    positive = [x for x in xs if x > 0]
    if not positive:  # only untrained methods
        ax.set_xlim(-1, 1)
        ax.set_xticks([0], ["0"])
        return xs
    lo, hi = min(positive), max(positive)
    if hi / lo <= LOG_RANGE:
        span = hi - min(xs)
        pad = (span if span > 0 else hi) * 0.12
        ax.set_xlim(max(0.0, min(xs) - pad) if min(xs) > 0 else -pad, hi + pad * 2.5)
        return xs
    ax.set_xscale("log")
    ax.set_xlabel("training time (s, log scale)")
    if not any(x <= 0 for x in xs):
        ax.set_xlim(lo / 2, hi * 4)
        return xs
    zero = 10 ** (math.floor(math.log10(lo)) - 1)  # untrained methods, one decade below the rest
    ax.set_xlim(zero / 2, hi * 4)
    decades = range(math.floor(math.log10(zero)) + 1, math.ceil(math.log10(hi * 4)))
    ticks = [zero] + [10.0**k for k in decades]
    ax.set_xticks(ticks, ["0"] + [f"$10^{{{k}}}$" for k in decades])
    top = math.ceil(math.log10(hi * 4))
    minor = [
        m * 10.0**k
        for k in range(decades.start - 1, top)
        for m in range(2, 10)
        if zero * 10 < m * 10.0**k < hi * 4
    ]
    ax.set_xticks(minor, minor=True)
    ax.xaxis.set_minor_formatter(_null_formatter())
    ax.axvline(zero * math.sqrt(10), color="gray", lw=0.8, ls=(0, (2, 2)), alpha=0.6)
    return [x if x > 0 else zero for x in xs]


def _null_formatter():
    from matplotlib.ticker import NullFormatter

    return NullFormatter()


def _place_labels(ax, points: list[tuple[float, float, str]]) -> None:
    """Annotate each point, choosing among a few offsets the one overlapping the fewest labels/points."""
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    axes_box = ax.get_window_extent(renderer)
    marks = [ax.transData.transform((x, y)) for x, y, _ in points]
    taken = [(mx - 6, my - 6, mx + 6, my + 6) for mx, my in marks]
    candidates = [
        (7, 7, "left", "bottom"),
        (7, -7, "left", "top"),
        (-7, 7, "right", "bottom"),
        (-7, -7, "right", "top"),
        (8, 0, "left", "center"),
        (-8, 0, "right", "center"),
        (0, 11, "center", "bottom"),
        (0, -11, "center", "top"),
    ]

    def overlap(a, b) -> float:
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        return w * h if w > 0 and h > 0 else 0.0

    for (x, y, text), (mx, my) in zip(points, marks):
        best = None
        for dx, dy, ha, va in candidates:
            ann = ax.annotate(
                text,
                (x, y),
                xytext=(dx, dy),
                textcoords="offset points",
                fontsize=8,
                ha=ha,
                va=va,
                annotation_clip=False,
            )
            ext = ann.get_window_extent(renderer)
            box = (ext.x0 - LABEL_GAP, ext.y0 - LABEL_GAP, ext.x1 + LABEL_GAP, ext.y1 + LABEL_GAP)
            own = (mx - 6, my - 6, mx + 6, my + 6)
            cost = sum(overlap(box, t) for t in taken if t != own)
            outside = (
                max(0, axes_box.x0 - box[0])
                + max(0, box[2] - axes_box.x1)
                + max(0, axes_box.y0 - box[1])
                + max(0, box[3] - axes_box.y1)
            )
            cost += outside * 40
            ann.remove()
            if best is None or cost < best[0]:
                best = (cost, dx, dy, ha, va, box)
            if cost == 0:
                break
        assert best is not None
        _, dx, dy, ha, va, box = best
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8, ha=ha, va=va)
        taken.append(box)


def plot_cost_scatter(rows: list[Row], cost_rows, path: str | Path) -> Path:
    """Per setting: the headline score (HM, or accuracy) against training time, one labelled point per method."""
    plt = _pyplot()
    panels = focus_rows(rows)
    times = {(c.setting, c.method): c.train_time_s for c in cost_rows}
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(6.4 * n, 4.8), squeeze=False)
    colors = plt.get_cmap("tab10").colors
    labels = []
    for ax, (setting, (focus, sub)) in zip(axes[0], panels.items()):
        has_novel = any(r.novel for r in sub)
        points = [(times.get((setting, r.method)), r.score, r.method, i) for i, r in enumerate(sub)]
        shown = [p for p in points if p[0] is not None and p[1] is not None]
        missing = len(points) - len(shown)
        ax.set_title(_panel_title(setting, focus, sub), fontsize=11)
        ax.set_ylabel(("HM" if has_novel else "accuracy") + " (%)")
        ax.set_xlabel("training time (s)")
        ax.grid(alpha=0.3)
        ax.set_axisbelow(True)
        ax.spines[["top", "right"]].set_visible(False)
        if not shown:
            ax.text(0.5, 0.5, "no training-time data", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        xs = _x_axis(ax, [p[0] for p in shown])
        ys = [p[1] for p in shown]
        pad = max((max(ys) - min(ys)) * 0.15, 1.0)
        ax.set_ylim(min(ys) - pad, max(ys) + pad)
        for x, y, (_, _, _, i) in zip(xs, ys, shown):
            ax.scatter(
                [x], [y], s=60, color=colors[i % len(colors)], edgecolor="black", linewidth=0.6, zorder=3
            )
        labels.append((ax, [(x, y, _wrap(p[2], 20)) for x, y, p in zip(xs, ys, shown)]))
        notes = []
        if ax.get_xscale() == "log" and any(p[0] <= 0 for p in shown):
            notes.append("0: no training")
        if missing:
            notes.append(f"{missing} method(s) without training time not shown")
        if notes:
            ax.text(
                0.99,
                0.01,
                "; ".join(notes),
                ha="right",
                va="bottom",
                fontsize=7,
                color="dimgray",
                transform=ax.transAxes,
            )
    fig.tight_layout()
    for ax, points in labels:  # after the layout, so that the overlap test sees the final positions
        _place_labels(ax, points)
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_shot_curves(rows: list[Row], path: str | Path, setting: str | None = None) -> Path:
    """Accuracy versus shots (log2 axis), one line per method: the Average panel first, then one panel per
    dataset (the papers' few-shot figure). `setting`: which setting's rows (default: the first with several
    shots values)."""
    plt = _pyplot()
    rows = [r for r in rows if not r.diagnostic and r.shots is not None]
    if setting is None:
        setting = next(
            s
            for s in sorted({r.setting for r in rows}, key=setting_sort_key)
            if len(shot_values([r for r in rows if r.setting == s])) > 1
        )
    rows = [r for r in rows if r.setting == setting]
    datasets = sorted({r.dataset for r in rows}, key=dataset_sort_key)
    datasets = [d for d in datasets if d == AVERAGE] + [d for d in datasets if d != AVERAGE]
    methods = list(dict.fromkeys(r.method for r in rows))  # the table's (canonical) order
    shots = shot_values(rows)
    cols = min(4, len(datasets))
    n_rows = math.ceil(len(datasets) / cols)
    fig, axes = plt.subplots(n_rows, cols, figsize=(4.2 * cols, 3.4 * n_rows), squeeze=False)
    colors = plt.get_cmap("tab20").colors  # a study has up to ~12 method rows: no colour repeats
    markers = "osD^vP*Xh<>"
    for ax, dataset in zip(axes.flat, datasets):
        for i, method in enumerate(methods):
            points = sorted(
                (r.shots, r.base_mean) for r in rows if r.dataset == dataset and r.method == method
            )
            if not points:
                continue
            ax.plot(
                [k for k, _ in points],
                [v for _, v in points],
                marker=markers[i % len(markers)],
                markersize=4,
                linewidth=1.4,
                color=colors[i % len(colors)],
                label=method,
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.xaxis.set_minor_formatter(_null_formatter())
        title = (
            f"Average over {len({d for r in rows for d in r.datasets})} datasets"
            if dataset == AVERAGE
            else dataset
        )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("shots per class")
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    for ax in list(axes.flat)[len(datasets) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    return _save_with_legend_above(fig, handles, [_wrap(label, 28) for label in labels], 4, path)


def plot_regimes(points: list[RegimePoint], path: str | Path) -> Path:
    """TransMiter's gain over the target's zero-shot against the source's fine-tuned lead (left) and the
    CKA of the two models' logits (right); a row per group (base, then novel when any point has novel
    classes); colour = world, marker = setting; zero lines, and gain = lead dashed (the transfer passes on
    exactly the source's lead)."""
    plt = _pyplot()
    groups = [g for g in ("base", "novel") if any(p.get(f"gain_{g}") is not None for p in points)] or ["base"]
    worlds = sorted({p.world for p in points})
    settings = sorted({p.setting for p in points}, key=setting_sort_key)
    colors = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(len(groups), 2, figsize=(10, 4.0 * len(groups)), squeeze=False)
    for row, group in zip(axes, groups):
        for ax, x_name, x_label in (
            (
                row[0],
                f"lead_{group}",
                f"source lead on {GROUP_WORDS[group]} (source FT − target zero-shot, points)",
            ),
            (row[1], "cka", "linear CKA of source and target logits (fitting set)"),
        ):
            xs_all = []
            for wi, world in enumerate(worlds):
                for si, setting in enumerate(settings):
                    sub = [p for p in points if p.world == world and p.setting == setting]
                    pairs = [(p.get(x_name), p.get(f"gain_{group}")) for p in sub]
                    pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
                    if not pairs:
                        continue
                    xs_all += [x for x, _ in pairs]
                    ax.scatter(
                        [x for x, _ in pairs],
                        [y for _, y in pairs],
                        color=colors[wi % len(colors)],
                        marker=SETTING_MARKERS[si % len(SETTING_MARKERS)],
                        s=28,
                        alpha=0.8,
                        label=f"{world}, {setting}",
                    )
            ax.axhline(0.0, color="black", linewidth=0.8)
            if x_name.startswith("lead") and xs_all:
                ax.axvline(0.0, color="black", linewidth=0.8)
                lo, hi = min(xs_all), max(xs_all)
                ax.plot([lo, hi], [lo, hi], linestyle="--", color="grey", linewidth=0.9, label="gain = lead")
            ax.set_xlabel(x_label, fontsize=9)
            ax.set_ylabel(
                f"TransMiter gain on {GROUP_WORDS[group]}\nover target zero-shot (points)", fontsize=9
            )
            ax.grid(alpha=0.3)
            ax.spines[["top", "right"]].set_visible(False)
            if not xs_all:
                ax.text(
                    0.5, 0.5, "no points with both figures", ha="center", va="center", transform=ax.transAxes
                )
    handles: dict[str, object] = {}  # one legend entry per label, across the panels
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    labels = list(handles)
    return _save_with_legend_above(fig, [handles[label] for label in labels], labels, 5, path)
