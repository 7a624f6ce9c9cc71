"""Throughput and peak-memory measurement shared by ``spatialvit bench`` and ``benchmarks/``.

Names are imported on first use (:mod:`spatialvit._lazy`): ``BenchConfig`` alone needs no torch."""

from .._lazy import lazy_exports

_EXPORTS = {
    "BenchConfig": ".config",
    "peak_mib": ".measure",
    "time_call": ".measure",
    "bench_models": ".models",
    "family_models": ".models",
    "run_bench": ".models",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
