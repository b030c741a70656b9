"""One JSON results record per run: the resolved config, code version, data/split identity,
models, metrics, wall times and costs. Records are the only input of reports.

Schema (version 1):
    {"schema": 1, "run_id", "created", "task_name", "study", "tags",
     "method", "row", "protocol", "setting", "dataset", "source_dataset", "target", "seed", "shots",
     "metrics": {"base", "novel", "hm"} | {"base"},
     "models": {role: identity}, "splits": {group: hash}, "timings": {name: seconds},
     "costs": {...}, "artifacts": {...}, "skipped_images": {path: reason},
     "code": {"version", "git_commit", "git_dirty"},
     "config": <fully resolved config>}

`dataset` is the dataset scored, `source_dataset` the one the job trained on (the same unless the setting
has targets: cross-dataset, domain generalisation); `target` describes how a setting target was scored
({"name", "label_space", "templates", "mapped_classes"}; null on the job's own dataset); `config` is the
job's config (its `dataset` the source). `timings` are this run's own wall times (a stage reused from the store costs ~0 there); a transfer
row's `costs.*_time_s` (fit, transfer, refine, feature_pass, train) are each stage's seconds as first
measured, so rows that reuse a stage still report its real cost.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from transmiter.distributed import is_global_zero
from transmiter.io import atomic_write

RECORD_FILE = "results.json"
SCHEMA_VERSION = 1


@lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """Package version plus git commit and dirty flag when running from a checkout."""
    from transmiter import __version__

    info: dict[str, Any] = {"version": __version__, "git_commit": None, "git_dirty": None}
    repo = Path(__file__).resolve().parents[3]
    if (repo / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            info.update(git_commit=commit, git_dirty=bool(dirty))
        except (OSError, subprocess.SubprocessError):
            pass
    return info


def resolved_config(cfg) -> dict[str, Any]:
    """The config with every interpolation resolved; Hydra-only nodes are left out."""
    container = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(container, dict)
    container.pop("hydra", None)
    output_dir = cfg.paths.get("output_dir", None) if "paths" in cfg else None
    if "paths" in container:
        container["paths"]["output_dir"] = output_dir  # `${hydra:...}` needs the Hydra node
    return OmegaConf.to_container(OmegaConf.create(container), resolve=True)  # type: ignore[return-value]


def build_record(ctx, result) -> dict[str, Any]:
    cfg = getattr(ctx, "training", ctx).cfg  # the job's config (a scored target's differs in `dataset`)
    target = getattr(ctx, "target", None)
    return {
        "schema": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex[:12],
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "task_name": cfg.get("task_name"),
        "study": cfg.get("study"),
        "tags": list(cfg.get("tags") or []),
        "method": result.method or cfg.method.name,
        "row": result.row if ctx.eval_split == "test" else f"{result.row} [{ctx.eval_split}]",
        "eval_split": ctx.eval_split,
        "protocol": result.protocol,
        "setting": cfg.setting.name,
        "dataset": ctx.cfg.dataset.name,
        "source_dataset": cfg.dataset.name,
        "target": None
        if target is None
        else {
            "name": target.name,
            "label_space": target.label_space,
            "templates": target.templates,
            "mapped_classes": None if target.class_map is None else len(target.class_map),
        },
        "seed": int(cfg.seed),
        "shots": int(cfg.setting.shots),
        "metrics": {k: round(float(v), 4) for k, v in result.metrics.items()},
        "models": result.models,
        "splits": result.splits,
        "timings": {k: round(float(v), 3) for k, v in (result.timings or ctx.timings).items()},
        "costs": result.costs,
        "artifacts": result.artifacts,
        "extra": result.extra,
        # images left out under dataset.on_corrupt_image=skip (empty otherwise): path -> reason
        "skipped_images": dict(sorted(getattr(ctx, "skipped_images", {}).items())),
        "code": code_version(),
        "output_dir": str(ctx.output_dir),
        "config": resolved_config(cfg),
    }


def write_record(ctx, result, subdir: str | None = None) -> Path:
    """Write `<output_dir>[/<subdir>]/results.json` atomically and return its path. Under a multi-process
    job only global rank 0 writes; the other ranks get the path of its record."""
    folder = Path(ctx.output_dir) / subdir if subdir else Path(ctx.output_dir)
    path = folder / RECORD_FILE
    if not is_global_zero():
        return path
    record = build_record(ctx, result)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(path, json.dumps(record, indent=2, sort_keys=False, default=str))
    return path


# what a record needs to be tabulated
REQUIRED_FIELDS = ("row", "setting", "dataset", "seed", "metrics")


def record_problem(rec: Any) -> str | None:
    """Why a parsed results.json cannot be used in a report, or None when it can."""
    if not isinstance(rec, dict):
        return f"holds a JSON {type(rec).__name__}, not a results record (an object)"
    if rec.get("schema") != SCHEMA_VERSION:
        return f"schema {rec.get('schema')!r}, not {SCHEMA_VERSION}: written by another version of transmiter"
    missing = [k for k in REQUIRED_FIELDS if k not in rec]
    if missing:
        return f"lacks {', '.join(missing)}"
    metrics = rec["metrics"]
    if not isinstance(metrics, dict) or not metrics:
        return "has no metrics (the row did not run)"
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in metrics.values()):
        return f"has non-numeric metrics {metrics}"
    if "base" not in metrics:
        return f"has no base accuracy among its metrics {sorted(metrics)}"
    return None


def scan_records(paths: Iterable[str | os.PathLike]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(usable records, {path: why unusable}) of every results record in the given files or below the
    given folders: one bad file never hides the others."""
    records, problems = [], {}
    for p in paths:
        p = Path(p)
        files = [p] if p.is_file() else sorted(p.rglob(RECORD_FILE))
        for f in files:
            try:
                rec = json.loads(f.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                problems[str(f)] = f"is not valid JSON ({err})"
                continue
            problem = record_problem(rec)
            if problem is not None:
                problems[str(f)] = problem
                continue
            rec["_path"] = str(f)
            records.append(rec)
    return records, problems


def load_records(paths: Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """The usable results records in the given files or below the given folders (`scan_records` says why
    the others were left out)."""
    return scan_records(paths)[0]
