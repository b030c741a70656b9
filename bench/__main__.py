"""`python -m bench [--only NAME ...] [--quick] [--tiny] [--threads N] [--write PATH] [--json PATH]`.

Runs the selected benchmarks, prints a rich table of ratios with the absolute figures, optionally writes
Markdown (`--write`, with machine information) and JSON (`--json`). Always exits 0 once the suite has run:
a missed goal is a "fail" row, not an error.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from bench.suite import BENCHMARKS

    names = ", ".join(
        f"{b.name} ({b.number}. {b.title}{'' if b.default else ', not run by default'})"
        for b in BENCHMARKS.values()
    )
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.split("\n\n")[1], epilog=f"benchmarks: {names}"
    )
    p.add_argument(
        "--only", nargs="+", metavar="NAME", help="run only these benchmarks (e.g. --only transfer cache)"
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats")
    p.add_argument(
        "--tiny", action="store_true", help="tiny architectures only (no ViT-B-16 / ViT-L-14 runs)"
    )
    p.add_argument(
        "--write", metavar="PATH", help="write the report as Markdown (e.g. experiments/bench/README.md)"
    )
    p.add_argument("--json", metavar="PATH", help="also write the records as JSON")
    p.add_argument(
        "--demo-cmd", default="make demo", help="command timed by the demo benchmark (default: make demo)"
    )
    p.add_argument("--demo-timeout", type=float, default=3600.0, help="seconds allowed per demo run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch intra-op threads (default or 0: torch's choice); 1 keeps the figures steady on a CPU "
        "shared with other processes (OpenMP barriers make multi-threaded ops 10-100x slower there)",
    )
    p.add_argument("--workdir", help="parent folder of the temporary folders (default: the system temp dir)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TRANSMITER_PROGRESS", "0")  # no progress bars inside timed regions
    os.environ.setdefault("WANDB_MODE", "disabled")
    args = parse_args(argv)

    from rich.console import Console

    from bench.core import BenchOptions, machine_info
    from bench.report import WIDTH, print_rich, write_json, write_markdown
    from bench.suite import BENCHMARKS, resolve, run_suite

    console = Console(width=max(WIDTH, Console().width))
    if args.list:
        for b in BENCHMARKS.values():
            console.print(f"{b.number}. {b.name:<10} {b.title}{'' if b.default else '  (only with --only)'}")
        return 0
    try:
        resolve(args.only)
    except ValueError as err:
        console.print(f"[red]{err}[/red]")
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    opts = BenchOptions(
        quick=args.quick,
        tiny=args.tiny,
        demo_cmd=args.demo_cmd,
        demo_timeout_s=args.demo_timeout,
        seed=args.seed,
        workdir=Path(args.workdir) if args.workdir else None,
        explicit=frozenset(resolve(args.only)) if args.only else frozenset(),
    )
    start_machine = machine_info()
    records = run_suite(args.only, opts, progress=lambda msg: console.print(f"[dim]{msg}[/dim]"))
    machine = dict(start_machine)
    machine["load average at the end (1/5/15 min)"] = machine_info()["load average (1/5/15 min)"]
    machine = {
        ("load average at the start (1/5/15 min)" if k == "load average (1/5/15 min)" else k): v
        for k, v in machine.items()
    }
    print_rich(records, machine, console)
    command = "python -m bench " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    if args.write:
        path = write_markdown(args.write, records, machine, command.strip())
        console.print(f"wrote {path}")
    if args.json:
        path = write_json(args.json, records, machine)
        console.print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
