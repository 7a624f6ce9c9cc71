"""Class-conditional image generation with spatialvit's token mixers: a DiT-style denoiser, rectified-flow training
with EMA weights, Euler/Heun sampling with classifier-free guidance, and download-free evaluation (FID, precision,
recall and accuracy on the features of a spatialvit classifier).

Names are imported on first use (:mod:`spatialvit._lazy`): the configs alone need no torch."""

from .._lazy import lazy_exports

_EXPORTS = {
    "DenoiserConfig": ".config",
    "SamplingConfig": ".config",
    "classifier_features": ".evaluate",
    "frechet_distance": ".evaluate",
    "generation_metrics": ".evaluate",
    "precision_recall": ".evaluate",
    "EMA": ".flow",
    "flow_matching_loss": ".flow",
    "interpolate": ".flow",
    "sample_times": ".flow",
    "denoiser_from_checkpoint": ".loop",
    "load_denoiser_checkpoint": ".loop",
    "train_denoiser": ".loop",
    "train_on_dataset": ".loop",
    "DiT": ".model",
    "DiTBlock": ".model",
    "create_dit": ".model",
    "class_labels": ".sampler",
    "image_grid": ".sampler",
    "sample": ".sampler",
    "sample_classes": ".sampler",
    "save_image_grid": ".sampler",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
