"""Multi-process training under ``torchrun``: the process group, who writes files, and how data is sharded.

``torchrun --nproc_per_node=N -m spatialvit train ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without
them everything here reduces to a single process of rank 0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: ``rank`` of ``world_size``, GPU ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and shows progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    def all_reduce_sum(self, values: list[float], device: torch.device) -> list[float]:
        """Sum each of ``values`` over all ranks (identity in a single process)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def init_distributed(device: torch.device) -> DistContext:
    """Join the ``torchrun`` job described by the environment (nccl on CUDA, gloo on CPU), or stay single.

    A process group that is already initialised (e.g. by a launcher or a test) is used as it is.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    present = [v for v in TORCHRUN_VARS if v in os.environ]
    if not present:
        return DistContext()
    if len(present) != len(TORCHRUN_VARS):
        missing = sorted(set(TORCHRUN_VARS) - set(present))
        raise RuntimeError(f"incomplete torchrun environment: {', '.join(missing)} not set (launch with torchrun)")
    if not dist.is_available():
        raise RuntimeError("RANK/WORLD_SIZE are set but this PyTorch build has no torch.distributed")
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), int(os.environ["LOCAL_RANK"]))


def shard_indices(n: int, rank: int, world_size: int) -> list[int]:
    """The indices of ``n`` items that ``rank`` evaluates: every item exactly once over all ranks, no padding."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    return list(range(rank, n, world_size))
