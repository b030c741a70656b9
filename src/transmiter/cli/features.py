"""`transmiter features import|export`: feature files in the TransMiter authors' layout, in and out.

transmiter features import FOLDER [--out DIR] [--force] [--ft-label NAME] [hydra overrides]
    the study's transfer rows (TransMiter, TransMiter+, EFT) plus zero-shot and fine-tuned rows from
    FOLDER/<dataset>/<seed>/<shots>/{train,test}_features.pt; then `transmiter report DIR`
transmiter features export [--out DIR] [hydra overrides]
    a study's cached features and fine-tuned logits written in that layout (sweeps expand)

Examples:
    transmiter features import data/base2new_promptsrc --ft-label PromptSRC \\
        method.methods.transmiter.aux_vocabulary=data/classnames_dictionary.csv \\
        method.methods.transmiter_plus.aux_vocabulary=data/classnames_dictionary.csv
    transmiter features export experiment=demo --out outputs/features/demo
"""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="transmiter features", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_import = sub.add_parser("import", help="run the study's rows on feature files (no images needed)")
    p_import.add_argument(
        "folder", help="the folder holding <dataset>/<seed>/<shots>/{train,test}_features.pt"
    )
    p_import.add_argument(
        "--out", default=None, help="results folder (default outputs/features_import/<folder name>)"
    )
    p_import.add_argument(
        "--force", action="store_true", help="recompute folders whose records exist (stages are reused)"
    )
    p_import.add_argument(
        "--ft-label",
        default=None,
        help="label of the fine-tuned logits' rows, e.g. PromptSRC (default: export.json's, else 'Fine-tuned')",
    )
    p_export = sub.add_parser("export", help="write a study's features and fine-tuned logits in the layout")
    p_export.add_argument(
        "--out", default="outputs/features", help="folder receiving <dataset>/<seed>/<shots>/"
    )
    args, overrides = parser.parse_known_args(argv)
    flags = [o for o in overrides if o.startswith("-")]
    if flags:
        parser.error(f"unknown option(s) {flags}; hydra overrides are key=value")

    from hydra.errors import HydraException

    from transmiter.config import ConfigError
    from transmiter.exchange.exporter import StageNotDoneError, export_study
    from transmiter.exchange.importer import FeatureImportError, import_features
    from transmiter.features.released import FeatureFileError

    try:
        if args.command == "export":
            folders = export_study(overrides, args.out)
            print(f"wrote {len(folders)} folder(s) under {args.out}")
            return 0 if folders else 1
        from pathlib import Path

        out = args.out or str(Path("outputs/features_import") / Path(args.folder).resolve().name)
        paths = import_features(args.folder, overrides, out, force=args.force, ft_label=args.ft_label)
    except (FeatureFileError, FeatureImportError, StageNotDoneError, ConfigError, HydraException) as err:
        print(f"error: {err}")
        return 2
    from transmiter.reporting.records import load_records
    from transmiter.reporting.tables import results_table, to_markdown

    print(to_markdown(results_table(load_records(paths))))
    print(f"{len(paths)} results records under {out}; tables, CSV and plots: transmiter report {out}")
    return 0
