"""What every dataset of spatialvit provides, and the name registry behind ``load_dataset("cifar10:PATH")``.

Datasets yield ``(image, label)`` with ``image`` a float tensor ``[C, H, W]`` in ``[0, 1]`` — *not* normalised:
normalisation is explicit (``DatasetInfo.mean/std``, :class:`Normalize`) so perturbation probes can act on pixels
first, as the published protocols do. Augmentations act on whole batches (see ``transforms``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, Subset

from .._names import unknown_name


@dataclass(frozen=True)
class DatasetInfo:
    """Static description of a dataset: enough to build a model for it and to normalise its images."""

    name: str
    num_classes: int
    in_chans: int
    img_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetInfo:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class TensorImageDataset(Dataset):
    """An in-memory dataset: ``images [N, C, H, W]`` (uint8 0-255 or float 0-1) and ``labels [N]``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, info: DatasetInfo) -> None:
        if images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"images must be [N, C, H, W] with one label each, got {tuple(images.shape)}")
        self.images = images
        self.labels = labels.long()
        self.info = info

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = self.images[i]
        img = img.float() / 255.0 if img.dtype == torch.uint8 else img.float()
        return img, int(self.labels[i])

    def get_batch(self, indices: Sequence[int] | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[B, C, H, W]`` (float, [0, 1]) and labels ``[B]`` for ``indices``, gathered in one indexing op."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        img = self.images.index_select(0, idx)  # much faster than images[idx] for a 1-D index on CPU
        return (img.float() / 255.0 if img.dtype == torch.uint8 else img.float()), self.labels.index_select(0, idx)

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        """Batched fetch used by ``DataLoader`` (torch passes the batch's index list and hands the returned list of
        samples to ``collate_fn``): one gather and one conversion instead of a Python call per image."""
        images, labels = self.get_batch(indices)
        return list(zip(images.unbind(0), labels.tolist()))


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel on ``[B, C, H, W]``; prepend it to a model that expects normalised input."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``images [N, C, H, W]`` (uint8 or [0, 1] floats) on the [0, 1] scale.

    uint8 images are reduced to exact per-channel histograms; floats to float64 sums, ``chunk`` images at a time —
    so a 50,000-image set never becomes one float copy.
    """
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty [N, C, H, W] tensor, got {tuple(images.shape)}")
    C = images.shape[1]
    total = torch.zeros(C, dtype=torch.float64)
    squares = torch.zeros_like(total)
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    for i in range(0, len(images), chunk):
        x = images[i : i + chunk].transpose(0, 1).reshape(C, -1)
        if images.dtype == torch.uint8:
            counts = torch.stack([torch.bincount(row, minlength=256) for row in x]).double()  # [C, 256]
            total += counts @ levels
            squares += counts @ levels.square()
        else:
            total += x.double().sum(1)
            squares += x.double().square().sum(1)
    n = images[:, 0].numel()
    mean = total / n
    var = (squares - n * mean.square()) / max(n - 1, 1)
    return tuple(mean.tolist()), tuple(var.clamp_min(0).sqrt().clamp_min(1e-6).tolist())


Loader = Callable[..., Dataset]
_DATASETS: dict[str, Loader] = {}


def register_dataset(name: str) -> Callable[[Loader], Loader]:
    """Decorator: ``fn(root: str | None, split: str, img_size: int | None, **kw) -> Dataset`` under ``name``."""

    def wrap(fn: Loader) -> Loader:
        _DATASETS[name] = fn
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(_DATASETS)


_CACHE: dict[tuple[str, str, int | None], Dataset] | None = None  # load_dataset's memory inside cached_datasets()


@contextmanager
def cached_datasets() -> Iterator[None]:
    """Inside the block, :func:`load_dataset` (without extra keyword arguments) returns the dataset it loaded before
    for the same spec, split and size instead of reading and resizing the files again: a study's runs load their
    data once, and processes forked inside the block inherit what was loaded. The datasets are shared, so callers
    must not modify them (the training loop and the probes only read)."""
    global _CACHE
    outer = _CACHE
    _CACHE = {} if outer is None else outer
    try:
        yield
    finally:
        _CACHE = outer


def load_dataset(spec: str, split: str = "train", img_size: int | None = None, **kwargs: Any) -> Dataset:
    """Load a dataset from a spec ``NAME`` or ``NAME:PATH`` (``digits``, ``cifar10:/data/cifar-10-batches-py``).

    ``split`` is ``"train"`` or ``"test"``; ``img_size`` resizes images (``None`` keeps the dataset's own size).
    The returned dataset has an ``info`` attribute (:class:`DatasetInfo`). Inside :func:`cached_datasets` a
    dataset loaded before is returned again.
    """
    key = (spec, split, img_size)
    if _CACHE is not None and not kwargs and key in _CACHE:
        return _CACHE[key]
    dataset = _load(spec, split, img_size, **kwargs)
    if _CACHE is not None and not kwargs:
        _CACHE[key] = dataset
    return dataset


def _load(spec: str, split: str, img_size: int | None, **kwargs: Any) -> Dataset:
    name, _, root = spec.partition(":")
    if name not in _DATASETS:
        raise unknown_name("dataset", name, _DATASETS, f"Available: {', '.join(list_datasets())}.")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if img_size is not None and (isinstance(img_size, bool) or not isinstance(img_size, int) or img_size < 1):
        raise ValueError(f"img_size must be a positive int (or None to keep the dataset's size), got {img_size!r}")
    return _DATASETS[name](root or None, split, img_size, **kwargs)


def random_subset(dataset: Dataset, n: int, seed: int = 0) -> Dataset:
    """A fixed random subset of ``n`` items of ``dataset`` (in their original order; the same for every caller with
    the same ``seed``), keeping its ``info``; the dataset itself when it has at most ``n`` items."""
    if n >= len(dataset):
        return dataset
    idx = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:n].sort().values
    if isinstance(dataset, TensorImageDataset):
        return TensorImageDataset(
            dataset.images.index_select(0, idx), dataset.labels.index_select(0, idx), dataset.info
        )
    subset = Subset(dataset, idx.tolist())
    subset.info = dataset.info  # type: ignore[attr-defined]
    return subset
