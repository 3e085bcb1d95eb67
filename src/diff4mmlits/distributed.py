"""Devices, ``torchrun`` / PyTorch DDP helpers and case sharding.

Training scales from one CPU to several GPUs or machines with the standard launcher::

    torchrun --nproc_per_node 4 -m diff4mmlits.cli -- train --run runs/x --device cuda

(the ``--`` keeps torchrun from reading ``--run`` as an abbreviation of its own ``--run-path``).

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_distributed` reads them
(nothing else does), picks ``nccl`` on CUDA and ``gloo`` on CPU, and each process drives one
device. Only rank 0 writes files and shows progress bars.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from diff4mmlits.errors import InputError

T = TypeVar("T")


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto`` → CUDA (this process's local GPU) when available, else CPU; ``cpu``/``cuda[:N]`` as given."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"--device {name}: no CUDA GPU is visible on this machine; use --device cpu")
        if name == "cuda":
            return torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        try:
            device = torch.device(name)
        except RuntimeError:
            raise InputError(f"--device {name!r}: not a device name; use cuda or cuda:N") from None
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return device
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError("--device mps: Apple's Metal GPU is not available here; use --device cpu")
        return torch.device(name)
    if name == "cpu":
        return torch.device(name)
    raise InputError(f"--device {name!r}: unknown device; use auto, cpu, cuda or cuda:N")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a (possibly single-process) job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files, logs and progress bars."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistributedContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1); else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        if resolved.type == "cuda":
            torch.cuda.set_device(resolved)
        dist.init_process_group(backend=backend)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(model: torch.nn.Module, context: DistributedContext) -> torch.nn.Module:
    """Wrap ``model`` in DDP when the job has several processes; return it unchanged otherwise."""
    if not context.is_distributed:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside a DDP wrapper (what gets saved)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def reset_gpu_memory_peak() -> None:
    """Start counting this process's peak GPU memory afresh (a no-op where CUDA is not in use)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def gpu_memory_peak_gib() -> float | None:
    """Peak GPU memory held by tensors of this process since :func:`reset_gpu_memory_peak`, in GiB
    (``torch.cuda.max_memory_allocated`` on the current device); ``None`` where CUDA was not used."""
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return None
    return torch.cuda.max_memory_allocated() / 2**30


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` job, or the only process: the one that writes files and stamps."""
    return os.environ.get("RANK", "0") == "0"


def barrier_if_distributed() -> None:
    """Wait for every process of an initialised process group (nothing in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def barrier(context: DistributedContext) -> None:
    if context.is_distributed:
        dist.barrier()


def all_reduce_mean(value: float, context: DistributedContext) -> float:
    """Average a scalar over all processes (identity in a single process)."""
    if not context.is_distributed:
        return float(value)
    tensor = torch.tensor([float(value)], device=context.device if context.device.type == "cuda" else "cpu")
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor.item()) / context.world_size


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"2/4"`` → ``(2, 4)`` (shard 2 of 4, counted from 1); ``None`` → ``(1, 1)``."""
    if not text:
        return 1, 1
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise InputError(f"--shard {text!r}: expected I/N, e.g. --shard 1/4") from None
    if count < 1 or not 1 <= index <= count:
        raise InputError(f"--shard {text!r}: I must be between 1 and N (N ≥ 1)")
    return index, count


def shard(items: Sequence[T], index: int, count: int) -> list[T]:
    """Every ``count``-th item starting at ``index`` (1-based): shards are disjoint and cover all items."""
    return [item for position, item in enumerate(items) if position % count == index - 1]
