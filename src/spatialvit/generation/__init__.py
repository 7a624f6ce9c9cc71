"""Class-conditional image generation with spatialvit's token mixers: a DiT-style denoiser, rectified-flow training
with EMA weights, Euler/Heun sampling with classifier-free guidance, and download-free evaluation (FID, precision,
recall and accuracy on the features of a spatialvit classifier)."""

from .evaluate import classifier_features, frechet_distance, generation_metrics, precision_recall
from .flow import EMA, flow_matching_loss, interpolate, sample_times
from .loop import DenoiserConfig, denoiser_from_checkpoint, load_denoiser_checkpoint, train_denoiser, train_on_dataset
from .model import DiT, DiTBlock, create_dit
from .sampler import SamplingConfig, class_labels, image_grid, sample, sample_classes, save_image_grid

__all__ = [
    "EMA",
    "DenoiserConfig",
    "DiT",
    "DiTBlock",
    "SamplingConfig",
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
    "sample_classes",
    "sample_times",
    "save_image_grid",
    "train_denoiser",
    "train_on_dataset",
]
