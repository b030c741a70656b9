"""`transmiter` / `python -m transmiter`: the Hydra app, plus a few sub-commands.

transmiter [hydra overrides]                 run one job (or a sweep with -m)
transmiter data check dataset=NAME [...]     report what a dataset folder is missing
transmiter data fake dataset=NAME [...]      write a tiny fake copy of a dataset layout (tests, smoke)
transmiter report PATH... [--out DIR]        tables (Markdown, CSV) and plots from results records
transmiter world build [--scale demo|tiny]   pretrain (or reuse) the synthetic world's models and data
transmiter weights check pair=NAME           report whether a run's pretrained weights are here (exit 1 if not)
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["data"]:
        from transmiter.data.cli import main as data_main

        return data_main(argv[1:])
    if argv[:1] == ["report"]:
        from transmiter.reporting.report import main as report_main

        return report_main(argv[1:])
    if argv[:1] == ["world"]:
        from transmiter.synthetic.cli import main as world_main

        return world_main(argv[1:])
    if argv[:1] == ["weights"]:
        from transmiter.models.cli import main as weights_main

        return weights_main(argv[1:])
    if argv[:1] in (["help"], ["--commands"]):
        print(__doc__)
        return 0
    from transmiter.app import main as app_main

    sys.argv = [sys.argv[0], *argv]
    app_main()
    return 0


if __name__ == "__main__":
    sys.exit(main())
