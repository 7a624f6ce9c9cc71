"""Data: bundled digits, CIFAR-10/100, SVHN and image folders from local files; batch augmentations.

``load_dataset("digits", split="train", img_size=32)`` returns a dataset of unnormalised ``[C, H, W]`` images in
``[0, 1]`` with an ``info`` (:class:`DatasetInfo`: classes, channels, size, mean/std).
"""

from . import digits, synthetic  # noqa: F401  (registers "digits", "synthetic")
from .base import (
    DatasetInfo,
    Normalize,
    TensorImageDataset,
    channel_stats,
    list_datasets,
    load_dataset,
    register_dataset,
)
from .digits import resize_images

__all__ = [
    "DatasetInfo",
    "Normalize",
    "TensorImageDataset",
    "channel_stats",
    "list_datasets",
    "load_dataset",
    "register_dataset",
    "resize_images",
]
