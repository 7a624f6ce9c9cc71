"""Deprecated home of the synthetic experiments' plots (now :mod:`spatialvit.synth.plots`)."""

from .._lazy import moved_module

__getattr__ = moved_module(__name__, "..synth.plots")
