"""Dry runs: what a job would run and what is already there, without doing any heavy work.

    transmiter -m experiment=b2n dry_run=true        # one line per job of the sweep

A job is `done` when its folder holds `job.json` (written last, after every results record);
`partial` when some of its stages finished (its `stages.json` ledger); else `pending`. Each line also
says whether the dataset folder and the model weights are present, so a study fails before it starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from transmiter.distributed import is_global_zero
from transmiter.io import atomic_write

JOB_FILE = "job.json"


def job_status(output_dir: Path) -> tuple[str, list[str]]:
    if (output_dir / JOB_FILE).is_file():
        return "done", []
    try:
        ledger = json.loads((output_dir / "stages.json").read_text())
    except (OSError, ValueError):
        return "pending", []
    stages = sorted({v["name"] for v in ledger.values()})
    return ("partial" if stages else "pending"), stages


def mark_done(
    output_dir: Path, records: list[str], metrics: dict[str, Any], not_run: dict[str, str] | None = None
) -> None:
    """Write `job.json` (global rank 0 only under a multi-process job); `not_run`: rows that could not run
    here, with the reason."""
    if not is_global_zero():
        return
    job = {"status": "done", "records": records, "metrics": metrics, "not_run": dict(not_run or {})}
    atomic_write(output_dir / JOB_FILE, json.dumps(job, indent=1))


def _data_status(cfg: DictConfig) -> str:
    """'ok', or what is missing: the dataset's folder, then each setting target's."""
    from transmiter.config.instantiate import target_dataset_nodes
    from transmiter.config.validate import ConfigError, _validate_dataset_folder

    nodes = {"": cfg.dataset}
    try:
        nodes.update(target_dataset_nodes(cfg))
    except ConfigError as err:
        return f"INVALID ({err})"
    absent, problems = [], []
    for name, node in nodes.items():
        try:
            _validate_dataset_folder(node, cfg.paths.data_dir, name)
        except ConfigError as err:
            problems.append(str(err).split(":", 1)[1].strip().split(". ")[0])
            if "does not exist" in str(err):
                absent.append(str(node.folder))
    if not problems:
        return "ok" + (f" (+{len(nodes) - 1} targets)" if len(nodes) > 1 else "")
    if len(absent) > 1:  # one line per job: name the folders, not every path
        problems = [p for p in problems if "does not exist" not in p]
        problems.insert(0, f"{len(absent)} folders absent under {cfg.paths.data_dir}: {', '.join(absent)}")
    return f"MISSING ({'; '.join(problems)})"


def _weights_status(cfg: DictConfig) -> str:
    from transmiter.config.instantiate import instantiate
    from transmiter.config.validate import uses_pair
    from transmiter.models.clip import weights_available

    nodes = {"model": cfg.get("model")}
    if uses_pair(cfg):
        nodes = {"source": cfg.pair.source, "target": cfg.pair.target}
    parts = []
    for role, node in nodes.items():
        ok, where = weights_available(instantiate(node))
        parts.append(f"{role} {'ok' if ok else 'MISSING'}" + ("" if ok else f" [{where}]"))
    return ", ".join(parts)


def describe_job(cfg: DictConfig, output_dir: Path) -> str:
    status, stages = job_status(output_dir)
    from transmiter.config.validate import uses_pair

    who = cfg.pair.name if uses_pair(cfg) else cfg.model.get("name", cfg.model.arch)
    line = (
        f"[{status:>7}] {cfg.task_name}: method={cfg.method.name} dataset={cfg.dataset.name} "
        f"setting={cfg.setting.name} shots={cfg.setting.shots} seed={cfg.seed} models={who}"
    )
    if stages:
        line += f" | stages done: {', '.join(stages)}"
    if status != "done":
        line += f" | data: {_data_status(cfg)} | weights: {_weights_status(cfg)}"
    return line + f" | {output_dir}"
