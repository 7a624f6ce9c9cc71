"""Real image datasets from the user's local files in their published formats — nothing downloads.

``cifar10:PATH`` (the ``cifar-10-batches-py`` folder), ``cifar100:PATH`` / ``cifar100_coarse:PATH``
(``cifar-100-python``), ``svhn:PATH`` (folder with ``train_32x32.mat`` / ``test_32x32.mat``) are loaded into memory
as uint8 :class:`TensorImageDataset`; ``folder:PATH`` (``PATH/train/<class>/*.jpg``, ``PATH/val|test/<class>/...``)
decodes files lazily. ``info.mean/std`` always come from the training split. Missing files raise
``FileNotFoundError`` and malformed ones ``ValueError``, both naming the file and the expected format.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset

from .._text import plural
from .base import DatasetInfo, TensorImageDataset, channel_stats, register_dataset
from .digits import resize_images

CIFAR10_LAYOUT = "cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta} (the CIFAR-10 python version)"
CIFAR100_LAYOUT = "cifar-100-python/{train, test, meta} (the CIFAR-100 python version)"
SVHN_LAYOUT = "a folder with train_32x32.mat and test_32x32.mat (SVHN format 2, cropped digits)"
FOLDER_LAYOUT = "PATH/train/<class>/<image> and PATH/val/<class>/<image> (or PATH/test/...), one folder per class"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
RESIZE_CHUNK = 1024  # images resized at a time, to bound the float copy when upscaling a whole set


# --------------------------------------------------------------------------------------------------- helpers


def _root(name: str, root: str | None, layout: str) -> Path:
    if root is None:
        raise ValueError(f"dataset {name!r} reads local files: give its folder as '{name}:PATH' with PATH = {layout}")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{name}: folder {path} not found; expected {layout}")
    return path


def _file(path: Path, name: str, layout: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{name}: file {path} not found; expected {layout}")
    return path


def to_uint8_size(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """Resize uint8 ``images [N, C, H, W]`` to ``size x size`` (``None`` = keep), chunk by chunk, staying uint8."""
    if size is None or tuple(images.shape[-2:]) == (size, size):
        return images
    out = torch.empty(len(images), images.shape[1], size, size, dtype=torch.uint8)
    for i in range(0, len(images), RESIZE_CHUNK):
        chunk = resize_images(images[i : i + RESIZE_CHUNK].float() / 255.0, size)
        out[i : i + RESIZE_CHUNK] = (chunk * 255.0).round().to(torch.uint8)
    return out


_TRAIN_STATS: dict[tuple, tuple[tuple[float, ...], tuple[float, ...]]] = {}


def train_stats(
    files: list[Path], compute: Callable[[], tuple], *tag: Any
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The training split's (mean, std), computed by ``compute()`` once per process for the same unchanged
    ``files`` (and ``tag``) — so loading the test split does not re-read the training files every time."""
    key = (*tag, *((str(f.resolve()), f.stat().st_mtime_ns, f.stat().st_size) for f in files))
    if key not in _TRAIN_STATS:
        _TRAIN_STATS[key] = compute()
    return _TRAIN_STATS[key]


def _in_memory(
    name: str, images: torch.Tensor, labels: torch.Tensor, classes: list[str], img_size: int | None, stats: Any
) -> TensorImageDataset:
    """Wrap uint8 images ``[N, C, H, W]`` (resized to ``img_size``) with the training-split ``stats`` (mean, std)."""
    images = to_uint8_size(images, img_size)
    mean, std = stats
    info = DatasetInfo(
        name=name,
        num_classes=len(classes),
        in_chans=images.shape[1],
        img_size=tuple(images.shape[-2:]),
        mean=mean,
        std=std,
        classes=tuple(classes),
    )
    return TensorImageDataset(images, labels, info)


# ----------------------------------------------------------------------------------------------------- CIFAR


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays only, so a tampered "batch" file cannot run code."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays are expected)")
        return super().find_class(module, name)


def _unpickle(path: Path, what: str) -> dict[bytes, Any]:
    """Load one CIFAR pickle (a dict with bytes keys); ``what`` describes the expected content for errors."""
    try:
        with open(path, "rb") as f:
            d = _NumpyOnlyUnpickler(f, encoding="bytes").load()
    except Exception as e:  # any decoding failure means the file is not what we expect
        raise ValueError(f"{path}: cannot read it as a CIFAR python pickle ({what}): {e}") from e
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a pickled dict ({what}), got {type(d).__name__}")
    return d


def _cifar_batch(path: Path, label_key: bytes, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One CIFAR batch file -> uint8 images ``[N, 3, 32, 32]`` and int64 labels ``[N]``."""
    what = f"dict with b'data' uint8 [N, 3072] and {label_key!r} list of N ints in [0, {num_classes})"
    d = _unpickle(path, what)
    if b"data" not in d or label_key not in d:
        raise ValueError(f"{path}: missing keys; expected a {what}, got keys {sorted(d)}")
    data, labels = np.asarray(d[b"data"]), np.asarray(d[label_key])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{path}: b'data' is {data.dtype} {data.shape}; expected a {what}")
    if labels.ndim != 1 or len(labels) != len(data) or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: {label_key!r} has shape {labels.shape}; expected a {what}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"{path}: labels outside [0, {num_classes}); expected a {what}")
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def _label_names(path: Path, key: bytes, num_classes: int) -> list[str]:
    what = f"dict with {key!r}: {num_classes} class names"
    d = _unpickle(path, what)
    names = d.get(key)
    if not isinstance(names, list) or len(names) != num_classes:
        raise ValueError(f"{path}: expected a {what}, got keys {sorted(d)}")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]


def _load_cifar(
    name: str, root: Path, files: list[str], label_key: bytes, num_classes: int, layout: str
) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [_cifar_batch(_file(root / f, name, layout), label_key, num_classes) for f in files]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def _cifar(
    name: str,
    root: str | None,
    split: str,
    img_size: int | None,
    train_files: tuple[str, ...],
    test_file: str,
    meta: tuple[str, bytes],
    label_key: bytes,
    num_classes: int,
    layout: str,
) -> TensorImageDataset:
    path = _root(name, root, layout)
    classes = _label_names(_file(path / meta[0], name, layout), meta[1], num_classes)
    train = [_file(path / f, name, layout) for f in train_files]

    def load(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return _load_cifar(name, path, list(files), label_key=label_key, num_classes=num_classes, layout=layout)

    images, labels = load(train_files if split == "train" else (test_file,))
    stats = train_stats(train, lambda: channel_stats(images if split == "train" else load(train_files)[0]))
    return _in_memory(name, images, labels, classes=classes, img_size=img_size, stats=stats)


@register_dataset("cifar10")
def load_cifar10(root: str | None, split: str, img_size: int | None) -> TensorImageDataset:
    """CIFAR-10 from the python batches: 50,000 train / 10,000 test 32x32 RGB images, 10 classes."""
    train = tuple(f"data_batch_{i}" for i in range(1, 6))
    meta = ("batches.meta", b"label_names")
    return _cifar(
        "cifar10",
        root,
        split,
        img_size=img_size,
        train_files=train,
        test_file="test_batch",
        meta=meta,
        label_key=b"labels",
        num_classes=10,
        layout=CIFAR10_LAYOUT,
    )


@register_dataset("cifar100")
def load_cifar100(root: str | None, split: str, img_size: int | None, coarse: bool = False) -> TensorImageDataset:
    """CIFAR-100 from the python files: 50,000 / 10,000 32x32 RGB images; 100 fine labels (or 20 ``coarse``)."""
    name, key, n = ("cifar100_coarse", b"coarse_label", 20) if coarse else ("cifar100", b"fine_label", 100)
    meta = ("meta", key + b"_names")
    return _cifar(
        name,
        root,
        split,
        img_size=img_size,
        train_files=("train",),
        test_file="test",
        meta=meta,
        label_key=key + b"s",
        num_classes=n,
        layout=CIFAR100_LAYOUT,
    )


@register_dataset("cifar100_coarse")
def load_cifar100_coarse(root: str | None, split: str, img_size: int | None) -> TensorImageDataset:
    """CIFAR-100 with its 20 coarse (superclass) labels."""
    return load_cifar100(root, split, img_size, coarse=True)


# ------------------------------------------------------------------------------------------------------ SVHN

SVHN_FORMAT = "a MATLAB .mat with X uint8 [32, 32, 3, N] and y [N, 1] in 1..10 (10 = digit 0)"


def _svhn_file(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as e:
        raise ValueError(f"{path}: cannot read it as a MATLAB .mat file; expected {SVHN_FORMAT}: {e}") from e
    if "X" not in mat or "y" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path}: missing 'X'/'y' (found {keys}); expected {SVHN_FORMAT}")
    X, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if X.dtype != np.uint8 or X.ndim != 4 or X.shape[:3] != (32, 32, 3) or X.shape[3] != len(y):
        raise ValueError(f"{path}: X is {X.dtype} {X.shape} with {len(y)} labels; expected {SVHN_FORMAT}")
    if len(y) and (y.min() < 1 or y.max() > 10 or not np.array_equal(y, np.round(y))):
        raise ValueError(f"{path}: labels in [{y.min()}, {y.max()}]; expected {SVHN_FORMAT}")
    images = torch.from_numpy(np.ascontiguousarray(X.transpose(3, 2, 0, 1)))
    return images, torch.from_numpy(y.astype(np.int64) % 10)


@register_dataset("svhn")
def load_svhn(root: str | None, split: str, img_size: int | None) -> TensorImageDataset:
    """SVHN cropped digits (format 2): 73,257 train / 26,032 test 32x32 RGB images; label = the digit 0..9."""
    path = _root("svhn", root, SVHN_LAYOUT)
    train_file = _file(path / "train_32x32.mat", "svhn", SVHN_LAYOUT)
    images, labels = _svhn_file(train_file if split == "train" else _file(path / "test_32x32.mat", "svhn", SVHN_LAYOUT))
    stats = train_stats([train_file], lambda: channel_stats(images if split == "train" else _svhn_file(train_file)[0]))
    return _in_memory("svhn", images, labels, classes=[str(d) for d in range(10)], img_size=img_size, stats=stats)


# ---------------------------------------------------------------------------------------------- image folder

FOLDER_DEFAULT_SIZE = 224
FOLDER_STATS_IMAGES = 1000  # training images (evenly spaced) that the folder's mean/std are computed from


def resize_shorter_and_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """``image [C, H, W]`` -> ``[C, size, size]``: shorter side resized to ``size``, then the centre crop."""
    H, W = image.shape[-2:]
    scale = size / min(H, W)
    h, w = max(size, round(H * scale)), max(size, round(W * scale))
    out = resize_images(image[None], (h, w))[0]
    top, left = (h - size) // 2, (w - size) // 2
    return out[:, top : top + size, left : left + size]


def decode_image(path: Path, size: int) -> torch.Tensor:
    """Decode an image file with Pillow as RGB -> float ``[3, size, size]`` in [0, 1] (shorter side + centre crop)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except Exception as e:  # Pillow raises OSError/ValueError/SyntaxError/... for broken files
        raise ValueError(
            f"{path}: cannot decode it as an image (a file Pillow reads: {', '.join(IMAGE_EXTENSIONS)}): {e}"
        ) from e
    return resize_shorter_and_crop(torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0, size)


class ImageFolderDataset(Dataset):
    """Images decoded lazily from ``files`` (one per sample) with integer ``labels``; yields ``([3, S, S], label)``
    with ``S = info.img_size`` — shorter side resized to ``S``, centre crop; augmentation happens on batches."""

    def __init__(self, files: list[Path], labels: list[int], info: DatasetInfo) -> None:
        if len(files) != len(labels):
            raise ValueError(
                f"need one label per file, got {plural(len(files), 'file')} and {plural(len(labels), 'label')}"
            )
        self.files, self.labels, self.info = list(files), list(labels), info

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return decode_image(self.files[i], self.info.img_size[0]), self.labels[i]


def _class_dirs(split_dir: Path) -> list[str]:
    classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise ValueError(f"folder: {split_dir} has no class sub-folders; expected {FOLDER_LAYOUT}")
    return classes


def _scan(split_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        found = sorted(p for p in (split_dir / cls).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not found:
            raise ValueError(f"folder: class folder {split_dir / cls} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        files += found
        labels += [label] * len(found)
    return files, labels


def _test_dir(path: Path) -> Path:
    for name in ("val", "test"):
        if (path / name).is_dir():
            return path / name
    raise FileNotFoundError(f"folder: neither {path / 'val'} nor {path / 'test'} exists; expected {FOLDER_LAYOUT}")


@register_dataset("folder")
def load_folder(
    root: str | None, split: str, img_size: int | None, stats_images: int = FOLDER_STATS_IMAGES
) -> ImageFolderDataset:
    """An ImageNet-style folder: classes are the sorted sub-folder names of ``train``; the test split is ``val``
    (or ``test``) with the same classes. Images are ``img_size`` (default 224) squares, decoded on access.

    ``info.mean/std`` come from ``stats_images`` evenly spaced training images (computed once per process).
    """
    path = _root("folder", root, FOLDER_LAYOUT)
    train_dir = path / "train"
    if not train_dir.is_dir():
        raise FileNotFoundError(f"folder: {train_dir} not found; expected {FOLDER_LAYOUT}")
    size = img_size or FOLDER_DEFAULT_SIZE
    classes = _class_dirs(train_dir)
    train_files, train_labels = _scan(train_dir, classes)
    if split == "train":
        files, labels = train_files, train_labels
    else:
        test_dir = _test_dir(path)
        test_classes = _class_dirs(test_dir)
        if test_classes != classes:
            only_train = sorted(set(classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(classes))
            raise ValueError(
                f"folder: class folders differ between {train_dir} and {test_dir}: only in train {only_train}, "
                f"only in {test_dir.name} {only_test}; both splits need the same class sub-folders"
            )
        files, labels = _scan(test_dir, classes)
    sample = train_files[:: max(1, len(train_files) // max(1, stats_images))][:stats_images]
    stats = train_stats(
        [train_dir, *sample],
        lambda: channel_stats(torch.stack([(decode_image(f, size) * 255).round().to(torch.uint8) for f in sample])),
        size,
    )
    info = DatasetInfo(
        name="folder",
        num_classes=len(classes),
        in_chans=3,
        img_size=(size, size),
        mean=stats[0],
        std=stats[1],
        classes=tuple(classes),
    )
    return ImageFolderDataset(files, labels, info)
