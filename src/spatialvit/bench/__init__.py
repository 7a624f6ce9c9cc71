"""Throughput and peak-memory measurement shared by ``spatialvit bench`` and ``benchmarks/``.

Names are imported on first use (:mod:`spatialvit._lazy`): ``BenchConfig`` alone needs no torch."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".config": "BenchConfig",
        ".measure": "peak_mib time_call",
        ".models": "bench_models family_models run_bench",
    },
)
