"""`transmiter world build [world=NAME] [--scale demo|tiny] [--force] [hydra overrides]`: get the synthetic
world's weak and strong CLIPs (cached, shipped with the package, or pretrained here) and generate (or
reuse) its benchmarks, under the configured paths.

    transmiter world build                          # the default world (conf/config.yaml)
    transmiter world build world=class_knowledge    # a world by name (conf/world/)
    transmiter world build --force                  # pretrain again even when cached or shipped
    transmiter world build --scale tiny paths.data_dir=/tmp/d   # seconds; plumbing tests only
    transmiter world build --side-by-side           # both models at once, sharing the cores (not bit-identical)
    transmiter world list                           # the worlds, their benchmarks and what is built

The checkpoints are content-addressed by their pretraining config; this command also publishes them
under stable names, `<cache_dir>/world/<world>/<scale>/<arch>.safetensors`, which `conf/model/synth_*.yaml`
point at, and writes `world.json` there describing the world. `--update-shipped` (with the demo scale)
copies the world's checkpoints into the package, where later builds find them.
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


def published_folder(cache_dir: Path, world: str, scale: str) -> Path:
    """Where `transmiter world build` publishes a world's checkpoints (what conf/model/synth_* read)."""
    return Path(cache_dir) / "world" / world / scale


def _paths(overrides: list[str]):
    from transmiter.config import compose_config
    from transmiter.io import absolute

    cfg = compose_config(overrides)
    return cfg, absolute(cfg.paths.cache_dir), absolute(cfg.paths.data_dir)


def build(
    overrides: list[str],
    scale: str,
    side_by_side: bool = False,
    force: bool = False,
    update_shipped: bool = False,
) -> dict:
    from transmiter.synthetic.build import build_world, ship_world

    cfg, cache_dir, data_dir = _paths(overrides)
    world = build_world(
        cache_dir / "synthetic",
        data_dir,
        world=str(cfg.world.name),
        scale=scale,
        progress=True,
        side_by_side=side_by_side,
        force=force,
    )
    summary = publish_world(world, cache_dir, scale)
    if update_shipped:
        summary["shipped"] = str(ship_world(world))
    return summary


def publish_world(world, cache_dir: Path, scale: str) -> dict:
    """Publish a built world's checkpoints under `<cache_dir>/world/<world>/<scale>/` (the names
    `conf/model/synth_*` point at) and write `world.json` there; returns that summary."""
    folder = published_folder(cache_dir, world.world, scale)
    summary = world.to_dict()
    for role, arch, ckpt in (
        ("weak", world.weak_model, world.weak_checkpoint),
        ("strong", world.strong_model, world.strong_checkpoint),
    ):
        summary[f"{role}_published"] = str(publish(Path(ckpt), folder / f"{arch}.safetensors"))
    (folder / "world.json").write_text(json.dumps(summary, indent=1))
    return summary


def list_worlds(overrides: list[str]) -> list[str]:
    """One line per world: name, summary, benchmarks and whether its checkpoints are published here."""
    from transmiter.synthetic.worlds import WORLDS, shipped_manifest  # not build: it imports torch

    cfg, cache_dir, _ = _paths(overrides)
    lines = []
    for name, spec in WORLDS.items():
        folder = published_folder(cache_dir, name, str(cfg.world_scale))
        built = all((folder / f"{m}.safetensors").is_file() for m in ("SynthViT-T-8", "SynthViT-S-8"))
        default = " (default)" if name == cfg.world.name else ""
        lines.append(
            f"{name}{default}: {spec.summary}; benchmarks {', '.join(spec.benchmarks)}; "
            f"weights {'published in ' + str(folder) if built else 'not built'}"
            f"{'; shipped with the package' if shipped_manifest(name) else ''}"
        )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="transmiter world", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["build", "list"])
    parser.add_argument("--scale", default="demo", choices=["demo", "tiny"])
    parser.add_argument("--force", action="store_true", help="pretrain again even when cached or shipped")
    parser.add_argument(
        "--update-shipped",
        action="store_true",
        help="copy the built demo-scale checkpoints into the package (src/transmiter/synthetic/shipped/)",
    )
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="pretrain the missing models at once, sharing the CPU cores (faster; weights not bit-identical "
        "to a one-at-a-time build)",
    )
    args, overrides = parser.parse_known_args(argv)
    if args.command == "list":
        print("\n".join(list_worlds(overrides)))
        return 0
    if args.update_shipped and args.scale != "demo":
        parser.error("--update-shipped ships the demo scale only")
    summary = build(
        overrides,
        args.scale,
        side_by_side=args.side_by_side,
        force=args.force,
        update_shipped=args.update_shipped,
    )
    sources = summary["sources"]
    print(f"synthetic world {summary['world']} ({args.scale}) ready:")
    print(
        f"  weak   {summary['weak_model']:<14} {summary['weak_published']} ({sources[summary['weak_model']]})"
    )
    print(
        f"  strong {summary['strong_model']:<14} {summary['strong_published']} ({sources[summary['strong_model']]})"
    )
    for name, d in summary["datasets"].items():
        print(f"  data   {name:<14} {d['root']}")
    if "shipped" in summary:
        print(f"  shipped to {summary['shipped']}")
    return 0
