"""OmegaConf resolvers the shipped configs use; registered when `transmiter.config` is imported.

    gpus_per_node: ${transmiter.gpus_per_node:${trainer.accelerator},${trainer.devices}}

`transmiter.gpus_per_node`: the GPUs a SLURM job asks for on each node: the trainer's device count on a
GPU accelerator, none on CPU (a GPU request on a cluster without GPUs makes sbatch fail).
"""

from __future__ import annotations

from omegaconf import OmegaConf

GPU_ACCELERATORS = ("gpu", "cuda")


def gpus_per_node(accelerator: str, devices) -> int | None:
    if str(accelerator).lower() not in GPU_ACCELERATORS:
        return None
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, list | tuple):  # explicit device indices
        return len(devices)
    if isinstance(devices, str) and devices.isdigit():
        return int(devices)
    raise ValueError(
        f"trainer.devices={devices!r} under SLURM: give the number of GPUs per node (e.g. trainer.devices=4); "
        "SLURM must know it to start one task per GPU"
    )


def register() -> None:
    OmegaConf.register_new_resolver("transmiter.gpus_per_node", gpus_per_node, replace=True)


register()
