"""Plots of a results table: grouped bars of Base / Novel / HM (or accuracy) per method.

plot_results(rows, "results.png")
"""

from __future__ import annotations

from pathlib import Path

from transmiter.reporting.tables import AVERAGE, Row


def plot_results(rows: list[Row], path: str | Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = sorted({r.setting for r in rows})
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.2), squeeze=False)
    for ax, setting in zip(axes[0], settings):
        sub = [r for r in rows if r.setting == setting]
        datasets = {r.dataset for r in sub}
        # One panel per setting: the Average rows when there are several datasets, else the dataset.
        focus = AVERAGE if AVERAGE in datasets else sorted(datasets)[0]
        sub = [r for r in sub if r.dataset == focus]
        methods = [r.method for r in sub]
        series = [("Base", [r.base_mean for r in sub])]
        if any(r.novel for r in sub):
            series += [("Novel", [r.novel_mean for r in sub]), ("HM", [r.hm for r in sub])]
        width = 0.8 / len(series)
        for i, (label, values) in enumerate(series):
            xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(methods))]
            bars = ax.bar(xs, [v or 0 for v in values], width, label=label)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
        ax.set_xticks(range(len(methods)), methods, rotation=25, ha="right", fontsize=8)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_ylim(0, 105)
        ax.set_title(f"{setting} — {focus}")
        ax.legend(fontsize=8, loc="lower right")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
