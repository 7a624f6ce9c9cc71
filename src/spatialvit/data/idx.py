"""The MNIST family from its standard IDX files — nothing downloads.

``mnist:PATH``, ``fashion_mnist[:PATH]`` (default ``/usr/share/datasets/fashion-mnist``, where Debian's
``dataset-fashion-mnist`` package puts the files) and ``kmnist:PATH`` read ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each raw or gzip-compressed
``.gz``, in PATH or in ``PATH/raw/`` as torchvision keeps them) into memory as uint8 :class:`TensorImageDataset` of
``[N, 1, 28, 28]`` images. ``info.mean/std`` come from the training split. Missing files raise ``FileNotFoundError``
and malformed ones ``ValueError``, both naming the file, the expected format and where to get the data.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import torch

from .._text import plural
from .base import TensorImageDataset, channel_stats, register_dataset
from .images import _file, _in_memory, _root, train_stats

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC = 0x00000803  # 0, 0, data type 0x08 (unsigned byte), 3 dimensions
LABELS_MAGIC = 0x00000801  # 0, 0, data type 0x08 (unsigned byte), 1 dimension
IMAGE_SIZE = 28
NUM_CLASSES = 10
GZIP_MAGIC = b"\x1f\x8b"
IMAGES_FORMAT = (
    f"IDX images: magic 0x{IMAGES_MAGIC:08x} (unsigned bytes, 3 dimensions), the sizes N, {IMAGE_SIZE}, {IMAGE_SIZE} "
    f"as big-endian int32, then N*{IMAGE_SIZE}*{IMAGE_SIZE} pixel bytes"
)
LABELS_FORMAT = (
    f"IDX labels: magic 0x{LABELS_MAGIC:08x} (unsigned bytes, 1 dimension), the size N as big-endian int32, "
    f"then N label bytes in [0, {NUM_CLASSES})"
)

FASHION_MNIST_DEFAULT = "/usr/share/datasets/fashion-mnist"
MNIST_SOURCE = (
    "download the four .gz files from http://yann.lecun.com/exdb/mnist/ "
    "or a mirror such as https://ossci-datasets.s3.amazonaws.com/mnist/"
)
FASHION_MNIST_SOURCE = (
    f"get them with 'apt-get install dataset-fashion-mnist' (into {FASHION_MNIST_DEFAULT}), "
    "or download the four files from https://github.com/zalandoresearch/fashion-mnist"
)
KMNIST_SOURCE = "download the four files of its MNIST format (.gz) linked from https://github.com/rois-codh/kmnist"
MNIST_CLASSES = tuple(str(d) for d in range(10))
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
KMNIST_CLASSES = ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")  # お き す つ な は ま や れ を


def _layout(source: str) -> str:
    files = ", ".join(f for pair in IDX_FILES.values() for f in pair)
    return f"a folder with {files} (each raw or .gz; also inside PATH/raw/ as torchvision keeps them) — {source}"


def _find(folder: Path, base: str, name: str, layout: str) -> Path:
    """``folder/base``, ``base.gz``, or either inside ``folder/raw/``: the first that exists (raw before .gz)."""
    found = (p for d in (folder, folder / "raw") for p in (d / base, d / f"{base}.gz") if p.is_file())
    return next(found, None) or _file(folder / base, name, layout)


def read_idx(path: Path, magic: int, what: str, source: str) -> np.ndarray:
    """An IDX file of unsigned bytes (raw or gzip, told by its content) -> uint8 array shaped by its header.

    Checks the ``magic`` number (its low byte is the number of dimensions) and that the file holds exactly the
    header plus the product of the dimension sizes (big-endian int32) bytes; ``what`` and ``source`` (how to get
    the files) go into the errors.
    """

    def bad(problem: str) -> ValueError:
        return ValueError(f"{path}: {problem}; expected {what} — {source}")

    data = path.read_bytes()
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise bad(f"damaged gzip data ({e})") from e
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found = int.from_bytes(data[:4], "big")
    if len(data) >= 4 and found != magic:
        raise bad(f"magic number 0x{found:08x}, not 0x{magic:08x}")
    if len(data) < header:
        raise bad(f"only {len(data)} bytes, shorter than the {header}-byte header")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    size = header + math.prod(dims)
    if len(data) != size:
        sizes = " x ".join(map(str, dims))
        raise bad(f"{len(data)} bytes, but its header ({sizes}) needs {size}: truncated or padded")
    return np.frombuffer(data, np.uint8, offset=header).reshape(dims)


def _images(path: Path, source: str) -> torch.Tensor:
    """An IDX image file -> uint8 ``[N, 1, 28, 28]``."""
    images = read_idx(path, IMAGES_MAGIC, IMAGES_FORMAT, source)
    if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"{path}: images of {images.shape[1]}x{images.shape[2]}; expected {IMAGES_FORMAT} — {source}")
    return torch.from_numpy(images[:, None].copy())


def _labels(path: Path, source: str) -> torch.Tensor:
    """An IDX label file -> int64 ``[N]``, checked to lie in [0, 10)."""
    labels = read_idx(path, LABELS_MAGIC, LABELS_FORMAT, source)
    if len(labels) and labels.max() >= NUM_CLASSES:
        i = int(labels.argmax())
        raise ValueError(f"{path}: label {labels[i]} at index {i}; expected {LABELS_FORMAT} — {source}")
    return torch.from_numpy(labels.astype(np.int64))


def _load_idx(
    name: str, root: str | None, split: str, img_size: int | None, classes: tuple[str, ...], source: str
) -> TensorImageDataset:
    layout = _layout(source)
    path = _root(name, root, layout)
    train_images = _find(path, IDX_FILES["train"][0], name, layout)
    image_file, label_file = (_find(path, base, name, layout) for base in IDX_FILES[split])
    images, labels = _images(image_file, source), _labels(label_file, source)
    if len(images) != len(labels):
        raise ValueError(
            f"{image_file} holds {plural(len(images), 'image')} but {label_file} {plural(len(labels), 'label')}; "
            f"expected one label per image — {source}"
        )
    stats = train_stats(
        [train_images], lambda: channel_stats(images if split == "train" else _images(train_images, source))
    )
    return _in_memory(name, images, labels, classes=list(classes), img_size=img_size, stats=stats)


@register_dataset("mnist")
def load_mnist(root: str | None, split: str, img_size: int | None) -> TensorImageDataset:
    """MNIST handwritten digits: 60,000 train / 10,000 test 28x28 grey images; label = the digit 0..9."""
    return _load_idx("mnist", root, split, img_size=img_size, classes=MNIST_CLASSES, source=MNIST_SOURCE)


@register_dataset("fashion_mnist")
def load_fashion_mnist(root: str | None, split: str, img_size: int | None) -> TensorImageDataset:
    """Fashion-MNIST (Zalando): 60,000 / 10,000 28x28 grey clothing images, 10 classes; no PATH reads Debian's
    ``dataset-fashion-mnist`` files in ``FASHION_MNIST_DEFAULT``."""
    return _load_idx(
        "fashion_mnist",
        root or FASHION_MNIST_DEFAULT,
        split,
        img_size=img_size,
        classes=FASHION_MNIST_CLASSES,
        source=FASHION_MNIST_SOURCE,
    )


@register_dataset("kmnist")
def load_kmnist(root: str | None, split: str, img_size: int | None) -> TensorImageDataset:
    """Kuzushiji-MNIST: 60,000 / 10,000 28x28 grey images of 10 cursive hiragana (romanised class names)."""
    return _load_idx("kmnist", root, split, img_size=img_size, classes=KMNIST_CLASSES, source=KMNIST_SOURCE)
