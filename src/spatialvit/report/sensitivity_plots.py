"""Deprecated home of the sensitivity plots (now :mod:`spatialvit.probes.plots`)."""

from .._lazy import moved_module

__getattr__ = moved_module(__name__, "..probes.plots")
