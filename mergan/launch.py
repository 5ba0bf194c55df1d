"""Several processes: what the launcher started, checked before a run starts, so that either every process
trains as a rank of one process group (DDP: its own batches and noise, gradients averaged) or none starts.

    torchrun --standalone --nproc_per_node 2 train.py --cpu ...          # 2 processes on the CPU (gloo)
    accelerate launch --multi_gpu --num_processes 4 train.py ...         # 4 GPUs (NCCL)

Launchers say how many processes they started in the environment (``WORLD_SIZE``: torchrun and Accelerate's
multi-GPU launcher; ``PMI_SIZE`` and the like: MPI). Two launches start processes that never form a group:
``accelerate launch --cpu --num_processes N`` starts one process (Accelerate starts several CPU processes only
through MPI), and torchrun without ``--cpu`` on a machine with no GPU starts copies that Accelerate runs each
on its own. The first is refused, naming the command that works; the second trains on the CPU as ``--cpu``.
"""
from __future__ import annotations

import os

import torch

WORLD = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
LOCAL = ("LOCAL_WORLD_SIZE", "MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "MV2_COMM_WORLD_LOCAL_SIZE")
CPU_COMMAND = "torchrun --standalone --nproc_per_node N train.py --cpu ..."


class LaunchError(Exception):
    """A launch whose processes would not train as one group; the message names the command that works."""


def _env_int(names, env, default: int) -> int:
    for name in names:
        value = env.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return default


def processes(env=None) -> int:
    """How many processes the launcher started (1: none said)."""
    return _env_int(WORLD, os.environ if env is None else env, 1)


def use_cpu(cpu: bool, env=None) -> bool:
    """Whether the run trains on the CPU: ``--cpu``, or several processes on a machine without a GPU (they
    would otherwise not form a group, ``accelerate.PartialState`` joins them over gloo only with ``cpu``).
    Raises ``LaunchError`` for a launch that cannot give every process its own work."""
    env = os.environ if env is None else env
    n = processes(env)
    if n == 1 and env.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in env \
            and "LOCAL_RANK" not in env:
        # accelerate launch's simple launcher sets MASTER_ADDR only when asked for more than one process
        raise LaunchError(f"accelerate launch --cpu --num_processes N starts one process, not N (Accelerate starts "
                          f"several CPU processes only through MPI); start them with: {CPU_COMMAND}")
    if n == 1 or cpu:
        return cpu
    if not torch.cuda.is_available():
        return True
    local, gpus = _env_int(LOCAL, env, n), torch.cuda.device_count()
    if local > gpus:
        raise LaunchError(f"{local} processes on this machine but {gpus} GPU(s): one GPU per process; launch at "
                          f"most {gpus} (--nproc_per_node / --num_processes), or train them on the CPU with --cpu")
    return False


def check_group(accelerator, env=None) -> None:
    """After the ``Accelerator`` is made: its processes are the launcher's, else ``LaunchError``."""
    n = processes(env)
    if accelerator.num_processes != n:
        raise LaunchError(f"the launcher started {n} processes but they formed a group of "
                          f"{accelerator.num_processes}; on GPUs launch with accelerate launch --multi_gpu "
                          f"--num_processes {n} train.py ..., on the CPU with {CPU_COMMAND.replace('N', str(n))}")
