"""Training: the fit/evaluate engine, its YAML config, checkpoints and resume, DDP under torchrun.

Names are imported on first use (:mod:`spatialvit._lazy`): ``TrainConfig`` alone needs no torch."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".checkpoint": "classifier_from_checkpoint load_checkpoint model_from_checkpoint save_checkpoint",
        ".config": "TrainConfig",
        ".loop": "FitResult NonFiniteLossError evaluate evaluate_checkpoint fit",
    },
)
