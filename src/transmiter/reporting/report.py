"""`transmiter report`: Markdown tables, CSVs and plots from results records.

    transmiter report PATH... [--out DIR] [--study NAME] [--title T] [--readme FILE] [--full] [--order ...]

    transmiter report outputs/ --out outputs/report
    transmiter report outputs/ --study w2s --out outputs/report/w2s --readme experiments/w2s/README.md

writes DIR/results.md (accuracy table with its diagnostics block and regime lines per setting, cost
table, plot links), results.csv, regime.csv, costs.csv, results.png (Base / Novel / HM bars),
cost_scatter.png (score versus training time) and, for a setting with several shots values (the few-shot
study), <setting>_curves.png (accuracy versus shots per dataset and averaged). Settings with targets
(cross-dataset, domain generalisation) are tabled as source + targets + average. With --readme, the block
between `<!-- results:start -->` and `<!-- results:end -->` in FILE is replaced by the tables (the
markers are appended to FILE when absent); running it again with the same records changes nothing.
The console gets each setting's Average rows (methods, then diagnostics) last; --full prints results.md.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from transmiter.io import atomic_write
from transmiter.reporting.cost_table import CostRow, cost_table, costs_markdown, write_costs_csv
from transmiter.reporting.ordering import dataset_sort_key
from transmiter.reporting.plots import plot_cost_scatter, plot_results, plot_shot_curves
from transmiter.reporting.records import scan_records
from transmiter.reporting.regime import RegimeLine, regime_lines, regime_markdown, write_regime_csv
from transmiter.reporting.tables import (
    AVERAGE,
    Row,
    results_table,
    settings_of,
    shot_values,
    to_markdown,
    write_csv,
)

README_START = "<!-- results:start -->"
README_END = "<!-- results:end -->"


def tables_markdown(
    rows: list[Row], cost_rows: list[CostRow], level: int = 2, regimes: list[RegimeLine] | None = None
) -> str:
    """The accuracy (with each setting's regime lines) and cost sections; settings one heading level
    below `level`."""
    hashes = "#" * level
    after = {setting: regime_markdown(regimes or [], setting) for setting in {r.setting for r in rows}}
    parts = [f"{hashes} Accuracy\n", to_markdown(rows, level=level + 1, after_setting=after)]
    if cost_rows:
        parts += [f"\n{hashes} Cost\n", costs_markdown(cost_rows, level=level + 1)]
    return "\n".join(parts)


def write_report(
    records: list[dict],
    out_dir: str | Path,
    title: str = "Results",
    readme: str | Path | None = None,
    order: str = "canonical",
) -> dict[str, Path]:
    """Write results.md/.csv, costs.csv, results.png and cost_scatter.png under `out_dir`; with
    `readme`, also refresh that file's results block. Returns the written paths by role."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = results_table(records, order=order)
    cost_rows = cost_table(records, order=order)
    regimes = regime_lines(records)
    paths = {
        "markdown": out / "results.md",
        "csv": out / "results.csv",
        "regime_csv": out / "regime.csv",
        "costs_csv": out / "costs.csv",
        "plot": out / "results.png",
        "scatter": out / "cost_scatter.png",
    }
    write_csv(rows, paths["csv"])
    write_regime_csv(regimes, paths["regime_csv"])
    write_costs_csv(cost_rows, paths["costs_csv"])
    plot_results(rows, paths["plot"])
    plot_cost_scatter(rows, cost_rows, paths["scatter"])
    for setting in shot_settings(rows):
        paths[f"curves_{setting}"] = plot_shot_curves(rows, out / f"{setting}_curves.png", setting)
    md = [
        f"# {title}\n",
        f"From {len(records)} results records.\n",
        tables_markdown(rows, cost_rows, level=2, regimes=regimes),
    ]
    md += [
        "\n## Plots\n",
        *curve_links(rows, ""),
        f"![Base / Novel / HM per method]({paths['plot'].name})\n",
        f"![Accuracy versus training time]({paths['scatter'].name})\n",
    ]
    paths["markdown"].write_text("\n".join(md))
    if readme is not None:
        paths["readme"] = update_readme(
            readme, readme_block(rows, cost_rows, len(records), out, Path(readme), regimes)
        )
    return paths


def console_summary(rows: list[Row]) -> str:
    """A plain-text table per setting for the console: the Average rows (the dataset rows when a setting
    has one dataset), methods first, then the diagnostic rows. results.md holds every table."""
    lines: list[str] = []
    for setting in settings_of(rows):
        part = [r for r in rows if r.setting == setting]
        shown = [r for r in part if r.dataset == AVERAGE] or part
        averaged = shown[0].dataset == AVERAGE
        datasets = sorted({d for r in shown for d in (r.datasets or [r.dataset])}, key=dataset_sort_key)
        seeds = sorted({s for r in shown for s in r.seeds if s is not None})
        has_novel = any(r.novel for r in shown)
        labels = _summary_labels(shown, with_dataset=not averaged and len(datasets) > 1)
        scope = f"average of {len(datasets)} datasets" if averaged else ", ".join(datasets)
        lines.append(f"{setting} ({scope}; seeds {', '.join(map(str, seeds)) or '?'})")
        width = max(len(text) for text in labels.values())
        columns = ("base", "novel", "hm") if has_novel else ("accuracy",)
        lines.append("  " + "".ljust(width) + "".join(f"{c:>9}" for c in columns))
        for diagnostic in (False, True):
            group = [r for r in shown if bool(r.diagnostic) == diagnostic]
            if diagnostic and group:
                lines.append("  diagnostics:")
            for r in group:
                values = (r.base_mean, r.novel_mean, r.hm) if has_novel else (r.base_mean,)
                cells = "".join(f"{v:>9.2f}" if v is not None else f"{'':>9}" for v in values)
                lines.append("  " + labels[id(r)].ljust(width) + cells)
        lines.append("")
    return "\n".join(lines).rstrip()


def _summary_labels(rows: list[Row], with_dataset: bool) -> dict[int, str]:
    """Console labels by row id: the shots when they vary, the dataset when rows are not averages."""
    several_shots = len({r.shots for r in rows}) > 1
    return {
        id(r): (f"{r.shots}-shot " if several_shots else "")
        + r.method
        + (f" @ {r.dataset}" if with_dataset else "")
        for r in rows
    }


def shot_settings(rows: list[Row]) -> list[str]:
    """The settings with several shots values (they get accuracy-versus-shots curves)."""
    return [s for s in settings_of(rows) if len(shot_values([r for r in rows if r.setting == s])) > 1]


def curve_links(rows: list[Row], folder: str) -> list[str]:
    """Markdown image links to the shots curves, relative to `folder` ('' = next to the report)."""
    prefix = f"{folder}/" if folder else ""
    return [
        f"![{setting}: accuracy versus shots, per dataset and averaged]({prefix}{setting}_curves.png)\n"
        for setting in shot_settings(rows)
    ]


def readme_block(
    rows: list[Row],
    cost_rows: list[CostRow],
    n_records: int,
    out: Path,
    readme: Path,
    regimes: list[RegimeLine] | None = None,
) -> str:
    """The README's generated section: tables (headings from ###) and links to the report's plots."""
    rel = Path(os.path.relpath(out.resolve(), readme.resolve().parent)).as_posix()
    lines = [
        f"_Generated by `transmiter report` from {n_records} results records; plots and CSVs in `{rel}/`._\n",
        *curve_links(rows, rel),
        tables_markdown(rows, cost_rows, level=3, regimes=regimes),
    ]
    return "\n".join(lines)


def replace_block(text: str, content: str, start: str = README_START, end: str = README_END) -> str:
    """`text` with the part between the markers replaced by `content` (markers appended when absent)."""
    block = f"{start}\n{content.strip()}\n{end}"
    i, j = text.find(start), text.find(end)
    if i == -1 and j == -1:
        prefix = text.rstrip("\n")
        return (prefix + "\n\n" if prefix else "") + block + "\n"
    if i == -1 or j == -1 or j < i:
        raise ValueError(
            f"malformed results block: expected {start!r} followed by {end!r}; fix or remove the markers"
        )
    return text[:i] + block + text[j + len(end) :]


def update_readme(path: str | Path, content: str) -> Path:
    """Replace (or append) the results block of the Markdown file `path`; write only when it changes."""
    path = Path(path)
    old = path.read_text() if path.exists() else ""
    new = replace_block(old, content)
    if new != old:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, new)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="transmiter report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", help="results.json files or folders to search")
    parser.add_argument(
        "--out", default="outputs/report", help="folder for results.{md,csv,png}, costs.csv, ..."
    )
    parser.add_argument("--study", default=None, help="only records of this study")
    parser.add_argument("--title", default=None, help="heading of results.md (default: Results[: STUDY])")
    parser.add_argument(
        "--readme", default=None, help="also refresh this file's <!-- results:start/end --> block"
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="print all of results.md (every dataset, diagnostics, regime lines, costs), not the averages",
    )
    parser.add_argument(
        "--order",
        choices=("canonical", "alphabetical"),
        default="canonical",
        help="method row order (canonical: the paper's order, unknown methods last)",
    )
    args = parser.parse_args(argv)
    records, problems = scan_records(args.paths)
    if args.study:
        records = [r for r in records if r.get("study") == args.study]
    skipped = left_out_note(problems)
    if not records:
        print(
            f"no results records found under {', '.join(args.paths)}"
            + (f" for study {args.study!r}" if args.study else "")
            + skipped
        )
        return 1
    title = args.title or (f"Results: {args.study}" if args.study else "Results")
    try:
        paths = write_report(records, args.out, title, readme=args.readme, order=args.order)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    written = ", ".join(str(p) for p in paths.values())
    print(f"wrote {written} from {len(records)} records{skipped}\n")
    # the result is the last thing a report (and `make demo`) prints
    if args.full:
        print(paths["markdown"].read_text())
    else:
        print(f"Top-1 accuracy (%); every dataset, the regime lines and the costs: {paths['markdown']}\n")
        print(console_summary(results_table(records, order=args.order)))
    return 0


def left_out_note(problems: dict[str, str]) -> str:
    """The records left out, one line each with the reason (delete or re-run them)."""
    if not problems:
        return ""
    lines = [f"\nleft out {len(problems)} unusable record(s) (delete or re-run them):"]
    lines += [f"  {path}: {why}" for path, why in sorted(problems.items())]
    return "\n".join(lines)
