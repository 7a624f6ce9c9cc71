"""MNIST-family loaders on tiny IDX files written here in the exact published format (raw and gzipped, flat and in
torchvision's raw/ folder), every promised error for bad files, and the real Debian Fashion-MNIST files (when
installed) against an independent minimal IDX reader."""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from spatialvit.data import channel_stats, load_dataset, resize_images
from spatialvit.data import idx as idx_module

RNG = np.random.default_rng(0)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: 0, 0, type 0x08, ndim; each size as a big-endian uint32; the bytes."""
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_file(path: Path, data: bytes, gz: bool) -> Path:
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_idx(root: Path, n_train: int = 5, n_test: int = 3, gz: bool = True) -> dict[str, tuple[np.ndarray, ...]]:
    """The four files in ``root``; returns ``{split: (images [N, 28, 28], labels [N])}``."""
    root.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = RNG.integers(0, 10, n, dtype=np.uint8)
        for name, array in zip(FILES[split], (images, labels)):
            write_file(root / name, idx_bytes(array), gz)
        arrays[split] = (images, labels)
    return arrays


def read_idx_reference(path: Path) -> np.ndarray:
    """A minimal IDX reader independent of spatialvit: gzip + struct."""
    with gzip.open(path) as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    assert (zero, dtype) == (0, 0x08)
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data[4 + 4 * ndim :], np.uint8).reshape(dims)


# ---------------------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("gz", [True, False])
def test_idx_pixels_labels_shapes_and_train_stats(tmp_path, gz):
    arrays = write_idx(tmp_path / "mnist", gz=gz)
    train = load_dataset(f"mnist:{tmp_path / 'mnist'}", "train")
    test = load_dataset(f"mnist:{tmp_path / 'mnist'}", "test")
    for ds, (images, labels) in ((train, arrays["train"]), (test, arrays["test"])):
        assert ds.images.dtype == torch.uint8 and ds.images.shape == (len(labels), 1, 28, 28)
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert ds.labels.tolist() == labels.tolist()
    img, label = test[2]
    assert img.shape == (1, 28, 28) and img.dtype == torch.float32
    assert torch.equal((img[0] * 255).round().to(torch.uint8), torch.from_numpy(arrays["test"][0][2]))
    assert label == arrays["test"][1][2]
    x = arrays["train"][0] / 255.0
    np.testing.assert_allclose(train.info.mean, [x.mean()], rtol=1e-9)
    np.testing.assert_allclose(train.info.std, [x.std(ddof=1)], rtol=1e-9)
    assert test.info == train.info  # the test split is normalised with the training statistics
    assert train.info.name == "mnist" and train.info.in_chans == 1 and train.info.img_size == (28, 28)


def test_raw_files_are_preferred_and_torchvision_raw_folder_works(tmp_path):
    arrays = write_idx(tmp_path / "FashionMNIST" / "raw", gz=True)
    ds = load_dataset(f"fashion_mnist:{tmp_path / 'FashionMNIST'}", "test")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["test"][0]))
    # torchvision keeps both the .gz and the extracted file; the uncompressed one is read.
    raw = tmp_path / "FashionMNIST" / "raw"
    flipped = 255 - arrays["test"][0]
    write_file(raw / "t10k-images-idx3-ubyte", idx_bytes(flipped), gz=False)
    ds = load_dataset(f"fashion_mnist:{tmp_path / 'FashionMNIST'}", "test")
    assert torch.equal(ds.images[:, 0], torch.from_numpy(flipped))


def test_idx_img_size_resizes(tmp_path):
    write_idx(tmp_path / "k")
    ds = load_dataset(f"kmnist:{tmp_path / 'k'}", "test", img_size=32)
    assert ds.images.shape == (3, 1, 32, 32) and ds.images.dtype == torch.uint8 and ds.info.img_size == (32, 32)
    original = load_dataset(f"kmnist:{tmp_path / 'k'}", "test").images
    assert torch.equal(ds.images, (resize_images(original.float() / 255, 32) * 255).round().to(torch.uint8))
    assert ds.info.mean == pytest.approx(channel_stats(load_dataset(f"kmnist:{tmp_path / 'k'}").images)[0])


@pytest.mark.parametrize(
    ("name", "classes"),
    [
        ("mnist", ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")),
        (
            "fashion_mnist",
            ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        ),
        ("kmnist", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
    ],
)
def test_class_names(tmp_path, name, classes):
    write_idx(tmp_path)
    info = load_dataset(f"{name}:{tmp_path}", "test").info
    assert info.classes == classes and info.num_classes == 10 and info.name == name


def test_fashion_mnist_without_path_reads_the_default_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(idx_module, "FASHION_MNIST_DEFAULT", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"nowhere not found.*apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist")
    arrays = write_idx(tmp_path / "nowhere")
    assert load_dataset("fashion_mnist", "test").labels.tolist() == arrays["test"][1].tolist()


# ----------------------------------------------------------------------------------------------------- errors


def test_missing_path_folder_and_files(tmp_path):
    with pytest.raises(ValueError, match=r"give its folder as 'mnist:PATH'.*yann.lecun.com"):
        load_dataset("mnist")
    with pytest.raises(FileNotFoundError, match=r"kmnist: folder .*nowhere not found.*rois-codh/kmnist"):
        load_dataset(f"kmnist:{tmp_path / 'nowhere'}")
    write_idx(tmp_path / "m")
    (tmp_path / "m" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"m/t10k-labels-idx1-ubyte not found; expected a folder with"):
        load_dataset(f"mnist:{tmp_path / 'm'}", "test")
    (tmp_path / "m" / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"train-images-idx3-ubyte not found"):
        load_dataset(f"mnist:{tmp_path / 'm'}", "test")  # the test split needs the training images for its statistics


def _truncated_gzip(data: bytes) -> bytes:
    packed = gzip.compress(data)
    return packed[: len(packed) // 2]


IMAGES = idx_bytes(np.zeros((3, 28, 28), np.uint8))
LABELS = idx_bytes(np.array([0, 9, 3], np.uint8))


@pytest.mark.parametrize(
    ("target", "data", "message"),
    [
        (0, LABELS, r"magic number 0x00000801, not 0x00000803; expected IDX images"),
        (1, IMAGES, r"magic number 0x00000803, not 0x00000801; expected IDX labels"),
        (0, b"\x00\x00\x0d\x03" + IMAGES[4:], r"magic number 0x00000d03"),  # float32 data type
        (0, IMAGES[:-1], r"2367 bytes, but its header \(3 x 28 x 28\) needs 2368: truncated or padded"),
        (0, IMAGES + b"\x00", r"2369 bytes, but its header \(3 x 28 x 28\) needs 2368"),
        (1, LABELS[:6], r"only 6 bytes, shorter than the 8-byte header"),
        (0, idx_bytes(np.zeros((3, 32, 32), np.uint8)), r"images of 32x32; expected IDX images"),
        (1, idx_bytes(np.array([0, 10, 3], np.uint8)), r"label 10 at index 1; expected IDX labels.* in \[0, 10\)"),
        (0, _truncated_gzip(IMAGES), r"damaged gzip data"),
    ],
)
def test_corrupt_idx_files_raise_value_errors_naming_the_file(tmp_path, target, data, message):
    write_idx(tmp_path, gz=False)
    path = tmp_path / FILES["test"][target]
    path.write_bytes(data)
    with pytest.raises(ValueError, match=message) as err:
        load_dataset(f"fashion_mnist:{tmp_path}", "test")
    assert str(path) in str(err.value) and "zalandoresearch/fashion-mnist" in str(err.value)


def test_image_and_label_counts_must_agree(tmp_path):
    write_idx(tmp_path, gz=False)
    write_file(tmp_path / FILES["test"][1], idx_bytes(np.array([1, 2], np.uint8)), gz=False)
    message = r"t10k-images-idx3-ubyte holds 3 images but .*t10k-labels-idx1-ubyte 2 labels; expected one label"
    with pytest.raises(ValueError, match=message):
        load_dataset(f"mnist:{tmp_path}", "test")


# ------------------------------------------------------------------------------------------- real Debian files


def test_real_debian_fashion_mnist_matches_an_independent_reader():
    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip(f"{DEBIAN_FASHION_MNIST} absent (apt-get install dataset-fashion-mnist)")
    for split, n in (("train", 60_000), ("test", 10_000)):
        ds = load_dataset(f"fashion_mnist:{DEBIAN_FASHION_MNIST}", split)
        images, labels = (read_idx_reference(DEBIAN_FASHION_MNIST / f"{name}.gz") for name in FILES[split])
        assert len(ds) == n and ds.images.shape == (n, 1, 28, 28) and ds.images.dtype == torch.uint8
        assert np.array_equal(ds.images[:, 0].numpy(), images)
        assert np.array_equal(ds.labels.numpy(), labels) and np.bincount(labels).tolist() == [n // 10] * 10
        if split == "train":
            assert ds.info.mean == pytest.approx((images.mean(dtype=np.float64) / 255,), rel=1e-9)
            assert ds.info.std == pytest.approx((images.std(dtype=np.float64, ddof=1) / 255,), rel=1e-9)


def test_fashion_mnist_without_path_loads_the_debian_files():
    if not DEBIAN_FASHION_MNIST.is_dir():
        pytest.skip(f"{DEBIAN_FASHION_MNIST} absent (apt-get install dataset-fashion-mnist)")
    ds = load_dataset("fashion_mnist", "test")
    assert len(ds) == 10_000 and ds.info.classes[9] == "Ankle boot"
    assert ds.info.mean == pytest.approx((0.2860,), abs=1e-4) and ds.info.std == pytest.approx((0.3530,), abs=1e-4)
