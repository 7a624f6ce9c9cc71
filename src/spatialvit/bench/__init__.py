"""Throughput and peak-memory measurement shared by ``spatialvit bench`` and ``benchmarks/``."""

from .measure import peak_mib, time_call
from .models import bench_models, family_models

__all__ = ["bench_models", "family_models", "peak_mib", "time_call"]
