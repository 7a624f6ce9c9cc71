"""Training: the fit/evaluate engine, checkpoints and resume, DDP under torchrun."""

from .checkpoint import classifier_from_checkpoint, load_checkpoint, model_from_checkpoint, save_checkpoint

__all__ = ["classifier_from_checkpoint", "load_checkpoint", "model_from_checkpoint", "save_checkpoint"]
