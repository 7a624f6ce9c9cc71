"""Probes: measure what a trained classifier uses — block perturbations and the sensitivity sweep."""

from . import association  # noqa: F401  (patch association: spatialvit.probes.association)
from .perturb import block_mask, block_rotate, block_shuffle, is_aligned
from .sensitivity import (
    Perturbation,
    SensitivityResult,
    compare,
    make_settings,
    save_comparison,
    sensitivity_sweep,
)

__all__ = [
    "Perturbation",
    "SensitivityResult",
    "block_mask",
    "block_rotate",
    "block_shuffle",
    "compare",
    "is_aligned",
    "make_settings",
    "save_comparison",
    "sensitivity_sweep",
]
