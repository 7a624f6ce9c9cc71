"""Class-conditional image generation with spatialvit's token mixers: a DiT-style denoiser, rectified-flow training
with EMA weights, Euler/Heun sampling with classifier-free guidance, and download-free evaluation (FID, precision,
recall and accuracy on the features of a spatialvit classifier).

Names are imported on first use (:mod:`spatialvit._lazy`): the configs alone need no torch."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".config": "DenoiserConfig SamplingConfig",
        ".evaluate": "classifier_features frechet_distance generation_metrics precision_recall",
        ".flow": "EMA flow_matching_loss interpolate sample_times",
        ".loop": "denoiser_from_checkpoint load_denoiser_checkpoint train_denoiser train_on_dataset",
        ".model": "DiT DiTBlock create_dit",
        ".sampler": "class_labels image_grid sample sample_classes save_image_grid",
    },
)
