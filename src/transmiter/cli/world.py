"""`transmiter world build [--scale demo|tiny] [hydra overrides]`: pretrain (or reuse) the synthetic
world's weak and strong CLIPs and generate (or reuse) its benchmarks, under the configured paths.

    transmiter world build                          # ~6 CPU-minutes the first time, then seconds
    transmiter world build --scale tiny paths.data_dir=/tmp/d   # seconds; plumbing tests only
    transmiter world build --side-by-side           # both models at once, sharing the cores (not bit-identical)

The checkpoints are content-addressed by their pretraining config; this command also publishes them
under stable names, `<cache_dir>/world/<scale>/<arch>.safetensors`, which `conf/model/synth_*.yaml`
point at, and writes `<cache_dir>/world/<scale>/world.json` describing the world.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from transmiter.io import atomic_path


def publish(checkpoint: Path, stable: Path) -> Path:
    """Expose `checkpoint` as `stable` (hard link, else copy), atomically replacing an older one."""
    with atomic_path(stable) as tmp:
        tmp.unlink()
        try:
            os.link(checkpoint, tmp)
        except OSError:
            shutil.copyfile(checkpoint, tmp)
    return stable


def build(overrides: list[str], scale: str, side_by_side: bool = False) -> dict:
    from transmiter.config import compose_config
    from transmiter.io import absolute
    from transmiter.synthetic.build import build_world

    cfg = compose_config(overrides)
    cache_dir, data_dir = absolute(cfg.paths.cache_dir), absolute(cfg.paths.data_dir)
    world = build_world(
        cache_dir / "synthetic", data_dir, scale=scale, progress=True, side_by_side=side_by_side
    )
    return publish_world(world, cache_dir, scale)


def publish_world(world, cache_dir: Path, scale: str) -> dict:
    """Publish a built world's checkpoints under `<cache_dir>/world/<scale>/` (the names `conf/model/synth_*`
    point at) and write `world.json` there; returns that summary."""
    folder = Path(cache_dir) / "world" / scale
    summary = world.to_dict()
    for role, arch, ckpt in (
        ("weak", world.weak_model, world.weak_checkpoint),
        ("strong", world.strong_model, world.strong_checkpoint),
    ):
        summary[f"{role}_published"] = str(publish(Path(ckpt), folder / f"{arch}.safetensors"))
    (folder / "world.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="transmiter world", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--scale", default="demo", choices=["demo", "tiny"])
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="pretrain the missing models at once, sharing the CPU cores (faster; weights not bit-identical "
        "to a one-at-a-time build)",
    )
    args, overrides = parser.parse_known_args(argv)
    summary = build(overrides, args.scale, side_by_side=args.side_by_side)
    print(f"synthetic world ({args.scale}) ready:")
    print(f"  weak   {summary['weak_model']:<14} {summary['weak_published']}")
    print(f"  strong {summary['strong_model']:<14} {summary['strong_published']}")
    for name, d in summary["datasets"].items():
        print(f"  data   {name:<14} {d['root']}")
    return 0
