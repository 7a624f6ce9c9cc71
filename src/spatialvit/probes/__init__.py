"""Probes: measure what a trained classifier uses — block perturbations and the sensitivity sweep.

Names are imported on first use (:mod:`spatialvit._lazy`): the configs (:mod:`.config`) alone need no torch."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".association": "association",
        ".config": "SensitivityRunConfig SweepConfig",
        ".perturb": "Perturbation block_mask block_rotate block_shuffle is_aligned make_settings",
        ".sensitivity_run": "run_sensitivity",
        ".sweep": "SensitivityResult compare save_comparison sensitivity_sweep",
    },
)
