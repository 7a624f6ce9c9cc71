"""Deprecated home of the sweep (now :mod:`.sweep`; perturbation settings: :mod:`.perturb`)."""

from .._lazy import moved_module

__getattr__ = moved_module(__name__, ".sweep")
