"""Where a command runs: the device, and whether this process is the one that writes (rank 0 of ``torchrun``)."""

from __future__ import annotations

import os

import torch

from ..config import AUTO


def resolve_device(name: str | torch.device = AUTO) -> torch.device:
    """``'auto'`` (CUDA when available), ``'cpu'``, ``'cuda'`` or ``'cuda:N'``; a CUDA device without CUDA raises."""
    if str(name) == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {str(name)!r} requested but CUDA is not available")
    return device


def is_main_process() -> bool:
    """Rank 0 of a ``torchrun`` job (or a single process): the one that writes files and reports."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    return int(os.environ.get("RANK", "0")) == 0
