"""Probes: measure what a trained classifier uses — block perturbations and the sensitivity sweep.

Names are imported on first use (:mod:`spatialvit._lazy`): the configs (:mod:`.config`) alone need no torch."""

from .._lazy import lazy_exports

_EXPORTS = {
    "association": ".association",  # patch association: spatialvit.probes.association
    "SensitivityRunConfig": ".config",
    "SweepConfig": ".config",
    "block_mask": ".perturb",
    "block_rotate": ".perturb",
    "block_shuffle": ".perturb",
    "is_aligned": ".perturb",
    "Perturbation": ".sensitivity",
    "SensitivityResult": ".sensitivity",
    "compare": ".sensitivity",
    "make_settings": ".sensitivity",
    "save_comparison": ".sensitivity",
    "sensitivity_sweep": ".sensitivity",
}
__all__ = sorted(name for name in _EXPORTS if name != "association")
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
