"""Data: bundled digits, CIFAR-10/100, SVHN, MNIST, Fashion-MNIST, KMNIST and image folders from local files; batch
augmentations.

``load_dataset("digits", split="train", img_size=32)`` returns a dataset of unnormalised ``[C, H, W]`` images in
``[0, 1]`` with an ``info`` (:class:`DatasetInfo`: classes, channels, size, mean/std).
"""

from . import digits, idx, images, synthetic  # noqa: F401  (register "digits"; "mnist", "fashion_mnist", "kmnist";

# "cifar10", "cifar100(_coarse)", "svhn", "folder"; "synthetic")
from .base import (
    DatasetInfo,
    Normalize,
    TensorImageDataset,
    cached_datasets,
    channel_stats,
    list_datasets,
    load_dataset,
    random_subset,
    register_dataset,
)
from .digits import resize_images
from .images import ImageFolderDataset
from .transforms import BatchTransform, MixUpCutMix, RandAugment, build_train_transform

__all__ = [
    "BatchTransform",
    "DatasetInfo",
    "ImageFolderDataset",
    "MixUpCutMix",
    "Normalize",
    "RandAugment",
    "TensorImageDataset",
    "build_train_transform",
    "cached_datasets",
    "channel_stats",
    "list_datasets",
    "load_dataset",
    "random_subset",
    "register_dataset",
    "resize_images",
]
