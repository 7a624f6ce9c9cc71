"""Two measurements: the median wall time of a call, and the peak memory of the tensors it allocates.

Peak memory on CUDA: ``torch.cuda.max_memory_allocated`` above the level before the call. On CPU: the call runs once
under ``torch.profiler`` with ``profile_memory=True``; its per-op allocations and frees are replayed in time order
and the peak of the running total is reported (tensors allocated by the call: activations, autograd buffers,
optimiser state on a first step; inputs and parameters that exist before the call are excluded; allocations freed
inside a single op are netted out).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(
    fn: Callable[[], object],
    device: torch.device | str = "cpu",
    repeats: int = 5,
    warmup: int = 1,
    budget_s: float | None = None,
) -> float:
    """Median seconds of up to ``repeats`` calls of ``fn`` after ``warmup`` untimed calls; with ``budget_s``, stop
    early (after at least two timed calls) once the timed calls have taken that long."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times: list[float] = []
    while len(times) < repeats and (budget_s is None or len(times) < 2 or sum(times) < budget_s):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peak_mib(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Peak memory (MiB) of the tensors allocated while ``fn`` runs (method in the module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    current = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += e.cpu_memory_usage if e.name == "[memory]" else e.self_cpu_memory_usage
        peak = max(peak, current)
    return peak / 2**20
