"""scikit-learn's bundled handwritten digits (1,797 8x8 grey images, 10 classes) — real data with no download."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .base import DatasetInfo, TensorImageDataset, channel_stats, register_dataset

DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_DEFAULT_SIZE = 32


def resize_images(images: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of float images ``[N, C, H, W]`` (antialiased when shrinking), clamped to [0, 1]."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(images.shape[-2:]) == size:
        return images
    shrink = size[0] < images.shape[-2] or size[1] < images.shape[-1]
    out = F.interpolate(images, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return out.clamp(0.0, 1.0)


@register_dataset("digits")
def load_digits(root: str | None, split: str, img_size: int | None) -> TensorImageDataset:
    """The digits at ``img_size`` (default 32): a fixed stratified 80/20 train/test split (1,437 / 360)."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    if root is not None:
        raise ValueError("the digits dataset is bundled with scikit-learn and takes no path (use 'digits')")
    data = sk_digits()
    idx_train, idx_test = train_test_split(
        np.arange(len(data.target)),
        test_size=DIGITS_TEST_FRACTION,
        random_state=DIGITS_SPLIT_SEED,
        stratify=data.target,
    )
    idx = idx_train if split == "train" else idx_test
    images = torch.from_numpy(data.images[idx]).float().div(16.0).unsqueeze(1)
    images = resize_images(images, img_size or DIGITS_DEFAULT_SIZE)
    # Statistics always from the training split, so train and test are normalised alike.
    stats_src = torch.from_numpy(data.images[idx_train]).float().div(16.0).unsqueeze(1)
    mean, std = channel_stats(resize_images(stats_src, img_size or DIGITS_DEFAULT_SIZE))
    info = DatasetInfo(
        name="digits",
        num_classes=10,
        in_chans=1,
        img_size=tuple(images.shape[-2:]),
        mean=mean,
        std=std,
        classes=tuple(str(i) for i in range(10)),
    )
    return TensorImageDataset(images, torch.from_numpy(data.target[idx]), info)
