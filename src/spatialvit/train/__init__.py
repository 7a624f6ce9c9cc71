"""Training: the fit/evaluate engine, its YAML config, checkpoints and resume, DDP under torchrun.

Names are imported on first use (:mod:`spatialvit._lazy`): ``TrainConfig`` alone needs no torch."""

from .._lazy import lazy_exports

_EXPORTS = {
    "classifier_from_checkpoint": ".checkpoint",
    "load_checkpoint": ".checkpoint",
    "model_from_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
    "TrainConfig": ".config",
    "FitResult": ".loop",
    "NonFiniteLossError": ".loop",
    "evaluate": ".loop",
    "evaluate_checkpoint": ".loop",
    "fit": ".loop",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
