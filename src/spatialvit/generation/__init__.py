"""Class-conditional image generation with spatialvit's token mixers: a DiT-style denoiser, rectified-flow training
with EMA weights, Euler/Heun sampling with classifier-free guidance, and download-free evaluation (FID, precision,
recall and accuracy on the features of a spatialvit classifier)."""

from .evaluate import classifier_features, frechet_distance, generation_metrics, precision_recall
from .flow import EMA, flow_matching_loss, interpolate, sample_times
from .loop import DenoiserConfig, denoiser_from_checkpoint, load_denoiser_checkpoint, train_denoiser
from .model import DiT, DiTBlock, create_dit
from .sampler import class_labels, image_grid, sample, save_image_grid

__all__ = [
    "EMA",
    "DenoiserConfig",
    "DiT",
    "DiTBlock",
    "class_labels",
    "classifier_features",
    "create_dit",
    "denoiser_from_checkpoint",
    "flow_matching_loss",
    "frechet_distance",
    "generation_metrics",
    "image_grid",
    "interpolate",
    "load_denoiser_checkpoint",
    "precision_recall",
    "sample",
    "sample_times",
    "save_image_grid",
    "train_denoiser",
]
