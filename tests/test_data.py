"""Dataset loaders on tiny files written here in the real published formats (CIFAR python pickles, SVHN .mat,
PNG/JPEG class folders), batched access through a real DataLoader, and every promised error for bad files."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat
from torch.utils.data import DataLoader, Subset

from spatialvit.data import TensorImageDataset, channel_stats, load_dataset, resize_images
from spatialvit.data.base import DatasetInfo

RNG = np.random.default_rng(0)


def _pickle(path: Path, obj) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)  # the published files are protocol-2 pickles with bytes keys


def _unpickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _cifar_data(n: int) -> np.ndarray:
    return RNG.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 3, n_test: int = 4) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    names = [f"class{i}".encode() for i in range(10)]
    _pickle(root / "batches.meta", {b"label_names": names, b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    for i in range(1, 6):
        labels = RNG.integers(0, 10, per_batch).tolist()
        _pickle(
            root / f"data_batch_{i}",
            {b"batch_label": b"training batch", b"labels": labels, b"data": _cifar_data(per_batch)},
        )
    _pickle(
        root / "test_batch",
        {b"batch_label": b"testing", b"labels": [0, 9, 3, 3][:n_test], b"data": _cifar_data(n_test)},
    )
    return root


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    meta = {
        b"fine_label_names": [f"f{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"c{i}".encode() for i in range(20)],
    }
    _pickle(root / "meta", meta)
    for name, n in (("train", n_train), ("test", n_test)):
        d = {
            b"filenames": [b"x.png"] * n,
            b"batch_label": name.encode(),
            b"fine_labels": RNG.integers(0, 100, n).tolist(),
            b"coarse_labels": RNG.integers(0, 20, n).tolist(),
            b"data": _cifar_data(n),
        }
        _pickle(root / name, d)
    return root


def write_svhn(root: Path, n_train: int = 5, n_test: int = 3) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, n in (("train", n_train), ("test", n_test)):
        X = RNG.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [9], [10]][:n], dtype=np.uint8)
        savemat(root / f"{name}_32x32.mat", {"X": X, "y": y})
    return root


def write_folder(root: Path, test_name: str = "val", classes=("cat", "dog", "emu")) -> Path:
    for split in ("train", test_name):
        for c, cls in enumerate(classes):
            d = root / split / cls
            d.mkdir(parents=True)
            for k in range(2):
                arr = RNG.integers(0, 256, (10 + 3 * k, 14 - 2 * c, 3), dtype=np.uint8)
                img = Image.fromarray(arr)
                if k == 0:
                    img.save(d / f"{k}.png")
                else:
                    img.convert("L").save(d / f"{k}.JPEG", quality=90)  # grey JPEG, upper-case extension
            (d / "notes.txt").write_text("not an image")
    return root


# ---------------------------------------------------------------------------------------------------- CIFAR


def test_cifar10_pixels_labels_classes_and_train_stats(tmp_path):
    root = write_cifar10(tmp_path / "cifar-10-batches-py")
    train = load_dataset(f"cifar10:{root}", "train")
    test = load_dataset(f"cifar10:{root}", "test")
    assert len(train) == 15 and len(test) == 4
    assert train.images.dtype == torch.uint8 and train.images.shape == (15, 3, 32, 32)
    batches = [_unpickle(root / f"data_batch_{i}") for i in range(1, 6)]
    data = np.concatenate([b[b"data"] for b in batches])
    labels = [label for b in batches for label in b[b"labels"]]
    img, label = train[7]
    # Row layout: 1024 red values (row-major 32x32), then green, then blue.
    assert torch.equal((img * 255).round().to(torch.uint8), torch.from_numpy(data[7].reshape(3, 32, 32)))
    assert label == labels[7]
    assert train.info.classes[3] == "class3" and train.info.num_classes == 10 and train.info.in_chans == 3
    x = data.reshape(-1, 3, 32, 32) / 255.0
    np.testing.assert_allclose(train.info.mean, x.mean((0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(train.info.std, x.std((0, 2, 3), ddof=1), rtol=1e-9)
    assert test.info == train.info  # the test split is normalised with the training statistics
    assert test.labels.tolist() == [0, 9, 3, 3]


def test_cifar_img_size_resizes(tmp_path):
    root = write_cifar10(tmp_path / "c10")
    ds = load_dataset(f"cifar10:{root}", "test", img_size=16)
    assert ds.images.shape == (4, 3, 16, 16) and ds.images.dtype == torch.uint8
    assert ds.info.img_size == (16, 16)
    assert ds[0][0].shape == (3, 16, 16)
    original = load_dataset(f"cifar10:{root}", "test").images
    expected = (resize_images(original.float() / 255, 16) * 255).round().to(torch.uint8)
    assert torch.equal(ds.images, expected)


@pytest.mark.parametrize(
    ("spec", "num_classes", "key"), [("cifar100", 100, b"fine_labels"), ("cifar100_coarse", 20, b"coarse_labels")]
)
def test_cifar100_fine_and_coarse_labels(tmp_path, spec, num_classes, key):
    root = write_cifar100(tmp_path / "cifar-100-python")
    ds = load_dataset(f"{spec}:{root}", "test")
    expected = _unpickle(root / "test")[key]
    assert ds.labels.tolist() == expected
    assert ds.info.num_classes == num_classes == len(ds.info.classes) and ds.info.name == spec
    assert ds.info.classes[1] == ("f1" if num_classes == 100 else "c1")


# ----------------------------------------------------------------------------------------------------- SVHN


def test_svhn_layout_and_label_ten_is_zero(tmp_path):
    root = write_svhn(tmp_path / "svhn")
    ds = load_dataset(f"svhn:{root}", "train")
    assert ds.labels.tolist() == [0, 1, 2, 9, 0]
    from scipy.io import loadmat

    X = loadmat(root / "train_32x32.mat")["X"]
    n, c, h, w = 3, 1, 5, 20
    assert ds.images[n, c, h, w] == X[h, w, c, n]
    mean, std = channel_stats(torch.from_numpy(X.transpose(3, 2, 0, 1).copy()))
    assert load_dataset(f"svhn:{root}", "test").info.mean == pytest.approx(mean)
    assert ds.info.std == pytest.approx(std)


# --------------------------------------------------------------------------------------------- image folder


@pytest.mark.parametrize("test_name", ["val", "test"])
def test_image_folder_decodes_lazily_to_fixed_squares(tmp_path, test_name):
    root = write_folder(tmp_path / "imgs", test_name)
    train = load_dataset(f"folder:{root}", "train", img_size=8)
    test = load_dataset(f"folder:{root}", "test", img_size=8)
    assert len(train) == len(test) == 6
    assert train.info.classes == ("cat", "dog", "emu") and train.info.num_classes == 3
    assert train.info.img_size == (8, 8) and test.info == train.info
    labels = [train[i][1] for i in range(6)]
    assert labels == [0, 0, 1, 1, 2, 2]
    for i in range(6):
        img = train[i][0]
        assert img.shape == (3, 8, 8) and img.min() >= 0 and img.max() <= 1
    batch = next(iter(DataLoader(test, batch_size=4)))
    assert batch[0].shape == (4, 3, 8, 8) and batch[1].tolist() == [0, 0, 1, 1]


def test_image_folder_shorter_side_and_centre_crop_are_exact_without_resampling(tmp_path):
    root = tmp_path / "f"
    arr = RNG.integers(0, 256, (6, 10, 3), dtype=np.uint8)  # H=6, W=10: shorter side already 6
    for split in ("train", "val"):
        (root / split / "a").mkdir(parents=True)
        Image.fromarray(arr).save(root / split / "a" / "x.png")
    img = load_dataset(f"folder:{root}", "test", img_size=6)[0][0]
    expected = torch.from_numpy(arr[:, 2:8].copy()).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(img, expected)


def test_image_folder_stats_come_from_training_images(tmp_path):
    root = write_folder(tmp_path / "imgs")
    ds = load_dataset(f"folder:{root}", "test", img_size=8)
    from spatialvit.data.images import decode_image

    train_files = sorted((root / "train").rglob("*.png")) + sorted((root / "train").rglob("*.JPEG"))
    imgs = torch.stack([(decode_image(f, 8) * 255).round().to(torch.uint8) for f in train_files])
    mean, std = channel_stats(imgs)
    assert ds.info.mean == pytest.approx(mean) and ds.info.std == pytest.approx(std)
    # stats_images=2 takes every third of the 6 training files: cat/0.png and dog/1.JPEG.
    few = load_dataset(f"folder:{root}", "train", img_size=8, stats_images=2).info
    picked = [root / "train" / "cat" / "0.png", root / "train" / "dog" / "1.JPEG"]
    mean2, std2 = channel_stats(torch.stack([(decode_image(f, 8) * 255).round().to(torch.uint8) for f in picked]))
    assert few.mean == pytest.approx(mean2) and few.std == pytest.approx(std2)


# --------------------------------------------------------------------------------------- batched DataLoader


def test_getitems_gathers_a_batch_and_default_collate_stacks_it():
    images = torch.randint(0, 256, (50, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(50) % 7
    info = DatasetInfo("toy", 7, 3, (4, 4), (0.5,) * 3, (0.25,) * 3)
    ds = TensorImageDataset(images, labels, info)
    items = ds.__getitems__([3, 1, 4])
    assert isinstance(items, list) and len(items) == 3
    assert torch.equal(items[1][0], ds[1][0]) and items[2][1] == ds[4][1]
    for dataset in (ds, Subset(ds, list(range(10, 50)))):
        order = torch.randperm(len(dataset)).tolist()
        loader = DataLoader(dataset, batch_size=16, sampler=order)
        seen = 0
        for x, y in loader:
            idx = order[seen : seen + len(y)]
            assert x.dtype == torch.float32 and y.dtype == torch.int64
            assert torch.equal(x, torch.stack([dataset[i][0] for i in idx]))
            assert y.tolist() == [dataset[i][1] for i in idx]
            seen += len(y)
        assert seen == len(dataset)


def test_channel_stats_in_chunks_matches_direct():
    x = torch.randint(0, 256, (37, 2, 5, 3), dtype=torch.uint8)
    mean, std = channel_stats(x, chunk=4)
    f = x.double() / 255
    assert mean == pytest.approx(f.mean((0, 2, 3)).tolist()) and std == pytest.approx(f.std((0, 2, 3)).tolist())


def test_digits_split_and_size():
    train, test = load_dataset("digits", "train"), load_dataset("digits", "test", img_size=16)
    assert len(train) == 1437 and len(test) == 360
    assert train[0][0].shape == (1, 32, 32) and test[0][0].shape == (1, 16, 16)


# --------------------------------------------------------------------------------------------------- errors


def test_missing_path_folder_and_files_name_what_is_expected(tmp_path):
    with pytest.raises(ValueError, match=r"give its folder as 'cifar10:PATH'"):
        load_dataset("cifar10")
    with pytest.raises(FileNotFoundError, match=r"nowhere.*cifar-10-batches-py"):
        load_dataset(f"cifar10:{tmp_path / 'nowhere'}")
    root = write_cifar10(tmp_path / "c10")
    (root / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match=r"data_batch_3 not found; expected cifar-10-batches-py"):
        load_dataset(f"cifar10:{root}", "test")  # the test split needs the training files for its statistics
    with pytest.raises(FileNotFoundError, match=r"meta not found; expected cifar-100-python"):
        load_dataset(f"cifar100:{tmp_path}")
    svhn = write_svhn(tmp_path / "svhn")
    (svhn / "test_32x32.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_32x32.mat not found"):
        load_dataset(f"svhn:{svhn}", "test")
    with pytest.raises(FileNotFoundError, match=r"train not found; expected PATH/train/<class>"):
        load_dataset(f"folder:{tmp_path}")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00garbage that is no pickle", r"cannot read it as a CIFAR python pickle"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, r"missing keys; expected a dict with b'data'"),
        ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"b'data' is uint8 \(2, 1024\)"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, r"b'data' is float32"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"b'labels' has shape \(1,\)"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels outside \[0, 10\)"),
        ([1, 2, 3], r"expected a pickled dict"),
    ],
)
def test_corrupt_cifar_batches_raise_value_errors_naming_the_file(tmp_path, content, message):
    root = write_cifar10(tmp_path / "c10")
    target = root / "test_batch"
    if isinstance(content, bytes):
        target.write_bytes(content)
    else:
        _pickle(target, content)
    with pytest.raises(ValueError, match=message) as err:
        load_dataset(f"cifar10:{root}", "test")
    assert str(target) in str(err.value)


def test_cifar_pickles_from_numpy_1_load(tmp_path):
    # The published files were written by Python 2 / numpy 1: their arrays name numpy.core.multiarray._reconstruct.
    root = write_cifar10(tmp_path / "c10")
    d = {b"data": _cifar_data(2), b"labels": [4, 5]}
    stream = pickle.dumps(d, protocol=2).replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in stream
    (root / "test_batch").write_bytes(stream)
    ds = load_dataset(f"cifar10:{root}", "test")
    assert ds.labels.tolist() == [4, 5] and torch.equal(ds.images[1].flatten(), torch.from_numpy(d[b"data"][1]))


class _Exploit:
    def __reduce__(self):
        return (print, ("this should never run",))


def test_cifar_pickles_cannot_run_code(tmp_path, capsys):
    root = write_cifar10(tmp_path / "c10")
    _pickle(root / "test_batch", {b"data": _Exploit(), b"labels": [0]})
    with pytest.raises(ValueError, match=r"refusing to load .*print"):
        load_dataset(f"cifar10:{root}", "test")
    assert "should never run" not in capsys.readouterr().out


def test_bad_cifar_meta(tmp_path):
    root = write_cifar10(tmp_path / "c10")
    _pickle(root / "batches.meta", {b"label_names": [b"a", b"b"]})
    with pytest.raises(ValueError, match=r"batches.meta: expected a dict with b'label_names': 10 class names"):
        load_dataset(f"cifar10:{root}")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"cannot read it as a MATLAB .mat file"),
        (
            {"images": np.zeros((32, 32, 3, 1), np.uint8), "y": np.ones((1, 1))},
            r"missing 'X'/'y' \(found \['images', 'y'\]\)",
        ),
        ({"X": np.zeros((32, 32, 1, 2), np.uint8), "y": np.ones((2, 1))}, r"X is uint8 \(32, 32, 1, 2\)"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((3, 1))}, r"with 3 labels"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[0], [3]])}, r"labels in \[0, 3\]"),
        ({"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[1.5], [3]])}, r"labels in \[1.5, 3.0\]"),
    ],
)
def test_corrupt_svhn_files_raise_value_errors(tmp_path, content, message):
    root = write_svhn(tmp_path / "svhn")
    target = root / "test_32x32.mat"
    if content is None:
        target.write_bytes(b"MATLAB? no, just text")
    else:
        savemat(target, content)
    with pytest.raises(ValueError, match=message) as err:
        load_dataset(f"svhn:{root}", "test")
    assert str(target) in str(err.value)


def test_image_folder_errors(tmp_path):
    root = write_folder(tmp_path / "a")
    (root / "val" / "emu").rename(root / "val" / "owl")
    with pytest.raises(ValueError, match=r"class folders differ.*only in train \['emu'\], only in val \['owl'\]"):
        load_dataset(f"folder:{root}", "test")

    root = write_folder(tmp_path / "b")
    for f in (root / "train" / "dog").iterdir():
        f.unlink()
    with pytest.raises(ValueError, match=r"class folder .*train/dog holds no images"):
        load_dataset(f"folder:{root}")

    empty = tmp_path / "c"
    (empty / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"has no class sub-folders"):
        load_dataset(f"folder:{empty}")

    root = write_folder(tmp_path / "d")
    import shutil

    shutil.rmtree(root / "val")
    with pytest.raises(FileNotFoundError, match=r"neither .*val nor .*test exists"):
        load_dataset(f"folder:{root}", "test")

    root = write_folder(tmp_path / "e")
    bad = root / "val" / "cat" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff not really a jpeg")
    ds = load_dataset(f"folder:{root}", "test", img_size=8)
    with pytest.raises(ValueError, match=r"broken.jpg: cannot decode it as an image"):
        [ds[i] for i in range(len(ds))]


def test_unknown_dataset_and_split():
    with pytest.raises(KeyError, match="cifar10"):
        load_dataset("cifar-10:/x")
    with pytest.raises(ValueError, match="split must be"):
        load_dataset("digits", split="val")
    with pytest.raises(ValueError, match="img_size must be a positive int"):
        load_dataset("digits", img_size=0)
