"""Which process of a multi-process job this is.

Ranks of a re-executing launcher (``strategy=ddp`` under torchrun, SLURM or Lightning's own subprocess
launcher): every rank runs the whole app, so file outputs must come from one of them. ::

    begin_job()            # once per job, in the app: names the job for all its ranks (TRANSMITER_JOB_ID)
    is_global_zero()       # False on ranks 1..W-1: they train (collectives) but write no stage, record or job file
    job_token()            # the name every rank of this job sees (None outside a named job)

Under ``ddp_spawn`` only the main process runs the app (it is rank 0 for all of this); its workers live inside
``fit``. Only the launchers' environment variables and an initialised process group are read here; torch is
never imported by this module (a process group cannot exist before torch.distributed is).
"""

from __future__ import annotations

import os
import sys
import uuid

JOB_ENV = "TRANSMITER_JOB_ID"


def _process_group_rank() -> int | None:
    """This process's global rank in the initialised process group, or None when there is none."""
    dist = sys.modules.get("torch.distributed")
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return None


# ---------------------------------------------------------------------------------------------------------
# which process of a multi-process job this is
# ---------------------------------------------------------------------------------------------------------


def _env_int(name: str, default: int = 0) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _slurm_tasks() -> int:
    return _env_int("SLURM_NTASKS", 1)


def launched_as_rank() -> bool:
    """Whether a launcher started this process as one rank of several (torchrun, SLURM tasks, or a child
    that Lightning's ``ddp`` launcher re-executed), as opposed to a process that may start ranks itself."""
    env = os.environ
    return (
        "RANK" in env
        or "LOCAL_RANK" in env
        or "TORCHELASTIC_RUN_ID" in env
        or (_slurm_tasks() > 1 and "SLURM_PROCID" in env)
    )


def is_global_zero() -> bool:
    """True unless this process is a rank other than 0 of a multi-process job.

    Read from torch.distributed once it is initialised, else from the launchers' variables: torchrun's
    ``RANK``, Lightning's ``NODE_RANK``/``LOCAL_RANK`` (its ``ddp`` children learn their rank from these before
    any process group exists) and SLURM's ``SLURM_PROCID`` when the step has several tasks. A plain process
    and the main process of ``ddp_spawn`` are global zero."""
    rank = _process_group_rank()
    if rank is not None:
        return rank == 0
    keys = ["RANK", "NODE_RANK", "LOCAL_RANK"] + (["SLURM_PROCID"] if _slurm_tasks() > 1 else [])
    return all(_env_int(key) == 0 for key in keys)


def global_rank_label() -> str:
    """A short name of this rank for folder names and messages (``rank1``, ``node1-rank0``)."""
    rank = _process_group_rank()
    if rank is not None:
        return f"rank{rank}"
    env = os.environ
    if "RANK" in env:
        return f"rank{_env_int('RANK')}"
    if _slurm_tasks() > 1 and "SLURM_PROCID" in env:
        return f"rank{_env_int('SLURM_PROCID')}"
    node = _env_int("NODE_RANK")
    return f"node{node}-rank{_env_int('LOCAL_RANK')}" if node else f"rank{_env_int('LOCAL_RANK')}"


def job_token() -> str | None:
    """The name all ranks of this job share and no other (concurrent or earlier) job has, or None.

    ``TRANSMITER_JOB_ID`` when set (by :func:`begin_job`, inherited by Lightning's ``ddp`` children, or
    exported by you); else derived from the launcher: torchrun's run id and restart count, or SLURM's
    job/step id and requeue count, or the rendezvous address of an ``env://`` process group."""
    env = os.environ
    if env.get(JOB_ENV):
        return env[JOB_ENV]
    if "TORCHELASTIC_RUN_ID" in env:
        return "torchrun-" + "-".join(
            env.get(k, "")
            for k in ("TORCHELASTIC_RUN_ID", "TORCHELASTIC_RESTART_COUNT", "MASTER_ADDR", "MASTER_PORT")
        )
    if _slurm_tasks() > 1 and "SLURM_JOB_ID" in env:
        return "slurm-" + "-".join(
            env.get(k, "0") for k in ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT")
        )
    if "MASTER_PORT" in env and _env_int("WORLD_SIZE", 1) > 1:
        return f"env-{env.get('MASTER_ADDR', '')}-{env['MASTER_PORT']}"
    return None


def begin_job() -> None:
    """Name the job that starts now (``TRANSMITER_JOB_ID``), unless this process is a launched rank.

    A process that may go on to start ranks itself (Lightning's ``ddp`` launcher re-executes the command
    from inside the first ``fit``) gets a fresh id, which its children inherit with the environment;
    ranks started by torchrun or SLURM all derive the same id from their launcher instead (see
    :func:`job_token`). Called once per job, so jobs run one after another in one process differ."""
    if not launched_as_rank():
        os.environ[JOB_ENV] = uuid.uuid4().hex[:16]


# torch's DistributedDataParallel skips the parameters and buffers this attribute of the wrapped module names.
# No public API names single tensors: torch's own setter (_set_params_and_buffers_to_ignore_for_model) is
# private too, DDPStrategy(broadcast_buffers=False) stops the sync of every buffer (BatchNorm statistics of a
# ResNet tower included), and requires_grad=False concerns parameters only. tests/test_ddp_sync_exclusion.py
# pins the behaviour against the installed torch.
_DDP_IGNORE_ATTRIBUTE = "_ddp_params_and_buffers_to_ignore"


def exclude_from_ddp_sync(module, names) -> None:
    """DDP neither broadcasts nor all-reduces these parameters / buffers of `module` (names as in its
    state_dict, relative to the module DDP wraps: the LightningModule). For tensors every rank builds
    identically, or keeps per rank on purpose; adding to the names already excluded."""
    current = list(getattr(module, _DDP_IGNORE_ATTRIBUTE, []))
    setattr(module, _DDP_IGNORE_ATTRIBUTE, current + [n for n in names if n not in current])


def excluded_from_ddp_sync(module) -> list[str]:
    """The names `exclude_from_ddp_sync` gave `module`."""
    return list(getattr(module, _DDP_IGNORE_ATTRIBUTE, []))
