"""Two measurements: the median wall time of a call, and the peak memory of the tensors it allocates.

Peak memory is the highest level, above the level just before the call, of the bytes allocated during the call and
not yet freed: activations and autograd buffers, gradients, kernel scratch, optimiser state created by a first step;
inputs, parameters and optimiser state that exist before the call are not counted.

- CUDA: ``torch.cuda.max_memory_allocated`` above ``torch.cuda.memory_allocated`` before the call.
- CPU: the call runs once under ``torch.profiler`` with ``profile_memory=True``. With memory profiling on, PyTorch's
  CPU allocator records every allocation and free (``c10::ProfiledCPUMemoryReporter``), and each record carries
  ``total_allocated``: the bytes still live among the blocks allocated while profiling, counted under the
  allocator's lock at that moment. The peak is the largest ``total_allocated`` of the call minus its value at the
  call's first record (a 4-byte marker tensor allocated just before the call and alive through it), so it is exact
  to the byte, includes scratch allocated and freed inside a single kernel, does not depend on how the records are
  ordered, and repeats from run to run (unless several intra-op threads allocate at once and interleave
  differently). Frees of blocks allocated before memory profiling began are not recorded (on CUDA they would lower
  the level); the bench calls free none.

  The records are read from the profiler's raw event tree (``kineto_results.experimental_event_tree()``, the
  source ``torch.profiler._memory_profiler`` reads too), not from ``prof.events()``: there an op's allocations and
  frees are summed into one ``self_cpu_memory_usage`` and only frees outside any op stay separate ``[memory]``
  events. Replaying those sums at each op's start time, as this function did before, nets out scratch freed inside
  an op and moves the frees of a parent op (an autograd node releasing its saved tensors) before its children's
  allocations: it under-reported, e.g. 8 instead of 9 activations for the backward of a stack of linear layers
  (``tests/test_bench.py``), 68.55 instead of 70.65 MiB for a micro ViT training step at batch 64.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

import torch
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

# libkineto (torch.profiler's backend) writes a "USDT: ... profiler_start" / "profiler_stop" line to stderr for every
# profiled call, at its highest severity (USDT = 5, above ERROR = 4). It reads its threshold from this variable once,
# when the process first starts the profiler: 6 keeps it quiet. A value the user set is kept.
KINETO_LOG_LEVEL = "KINETO_LOG_LEVEL"
QUIET = "6"


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
    return _cpu_peak_bytes(fn) / 2**20


def _cpu_peak_bytes(fn: Callable[[], object]) -> int:
    """Peak live bytes of CPU allocator blocks allocated while ``fn`` runs (see the module docstring)."""
    os.environ.setdefault(KINETO_LOG_LEVEL, QUIET)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        marker = torch.empty(1)
        fn()
    ptr = marker.data_ptr()
    totals, start = [], None
    pending = list(prof.profiler.kineto_results.experimental_event_tree())
    while pending:
        event = pending.pop()
        pending.extend(event.children)
        if event.tag != _EventType.Allocation or event.extra_fields.device.type != "cpu":
            continue
        fields = event.extra_fields
        totals.append(fields.total_allocated)
        if fields.ptr == ptr and fields.alloc_size > 0:
            start = fields.total_allocated
    if start is None:
        raise RuntimeError("peak_mib: the profiler recorded no CPU allocation for its marker tensor")
    return max(totals) - start
