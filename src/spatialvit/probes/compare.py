"""Deprecated home of :func:`run_sensitivity` (now :mod:`.sensitivity_run`)."""

from .._lazy import moved_module

__getattr__ = moved_module(__name__, ".sensitivity_run")
