"""`transmiter report PATH... [--out DIR] [--study NAME]`: Markdown, CSV and PNG from results records.

transmiter report outputs/ --out outputs/report
"""

from __future__ import annotations

import argparse
from pathlib import Path

from transmiter.reporting.plots import plot_results
from transmiter.reporting.records import load_records
from transmiter.reporting.tables import results_table, to_markdown, write_csv


def write_report(records: list[dict], out_dir: str | Path, title: str = "Results") -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = results_table(records)
    md = f"## {title}\n\n" + to_markdown(rows)
    paths = {"markdown": out / "results.md", "csv": out / "results.csv", "plot": out / "results.png"}
    paths["markdown"].write_text(md)
    write_csv(rows, paths["csv"])
    plot_results(rows, paths["plot"])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="transmiter report", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="results.json files or folders to search")
    parser.add_argument("--out", default="outputs/report", help="folder for results.{md,csv,png}")
    parser.add_argument("--study", default=None, help="only records of this study")
    parser.add_argument("--title", default="Results")
    args = parser.parse_args(argv)
    records = load_records(args.paths)
    if args.study:
        records = [r for r in records if r.get("study") == args.study]
    if not records:
        print(f"no results records found under {', '.join(args.paths)}")
        return 1
    paths = write_report(records, args.out, args.title)
    print(paths["markdown"].read_text())
    print(f"wrote {paths['markdown']}, {paths['csv']}, {paths['plot']} from {len(records)} records")
    return 0
