"""Training: the fit/evaluate engine, its YAML config, checkpoints and resume, DDP under torchrun."""

from .checkpoint import classifier_from_checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint
from .config import TrainConfig
from .loop import FitResult, NonFiniteLossError, evaluate, evaluate_checkpoint, fit

__all__ = [
    "FitResult",
    "NonFiniteLossError",
    "TrainConfig",
    "classifier_from_checkpoint",
    "evaluate",
    "evaluate_checkpoint",
    "fit",
    "load_checkpoint",
    "model_from_checkpoint",
    "save_checkpoint",
]
