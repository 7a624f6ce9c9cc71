"""Checkpoints: written atomically (temp file + rename), read with ``weights_only=True``, and able to rebuild the
model they hold.

A checkpoint is a dict with:

- ``format``: ``"spatialvit-checkpoint-v1"``
- ``model_name`` and ``model_kwargs``: ``create_model(model_name, **model_kwargs)`` rebuilds the architecture
- ``model``: the model's ``state_dict``
- ``data_info``: the :class:`~spatialvit.data.DatasetInfo` (as a dict) of the data it was trained on, with the
  normalisation the model expects
- optional training state for ``--resume``: ``epoch``, ``optimizer``, ``scheduler``, ``scaler``, ``rng``,
  ``config``, ``metrics``
- ``ema``: the ``state_dict`` of the model EMA, when the run kept one (``ema_decay``)
- ``accuracy_unit``: ``"fraction"``: the accuracies in ``metrics`` are fractions in ``[0, 1]`` (checkpoints
  without the key stored percentages; :func:`load_checkpoint` converts them)

What a checkpoint was trained on and for how long (its data spec, image size, epochs and train limit) is read by
:func:`trained_on`; commands that take a checkpoint use it as their default data and refuse other data unless asked
(:func:`check_data`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .._text import plural
from ..data import DatasetInfo
from ..models import create_model
from ..runtime import with_normalize

FORMAT = "spatialvit-checkpoint-v1"
# Accuracies are fractions in [0, 1] everywhere (console, tables, checkpoints); checkpoints written before the key
# existed hold percentages in their metrics, under these names.
ACCURACY_UNIT = "fraction"
ACCURACY_KEYS = ("train_acc", "test_top1", "test_top5", "test_top1_ema", "test_top5_ema")
# Checkpoints of other commands, by kind or model_name: what they are and which command reads them.
OTHER_CHECKPOINTS = {
    "denoiser": "a denoiser checkpoint of `spatialvit generate train`, not a classifier: score it with "
    "`spatialvit generate evaluate`, draw samples with `spatialvit generate sample`",
    "synth_simplified": "the simplified model of `spatialvit synth train`, not a classifier: measure its patch "
    "association with `spatialvit synth associate`",
}


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically: a crash leaves either the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "accuracy_unit": ACCURACY_UNIT, **state}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a spatialvit checkpoint safely (``weights_only=True``); clear errors for missing or corrupt files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a damaged pickle can fail in the unpickler with almost any exception type
        looks = _looks_like(path)
        if looks is not None:
            raise ValueError(
                f"{str(path)!r} is not a spatialvit checkpoint (it looks like {looks}; torch.load: corrupt or not a "
                "PyTorch checkpoint)"
            ) from err
        raise ValueError(
            f"checkpoint {str(path)!r} is corrupt or not a PyTorch checkpoint "
            f"({type(err).__name__}: {(str(err).strip().splitlines() or [''])[0].split('. ')[0]})"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(
            f"{str(path)!r} is not a spatialvit checkpoint (expected format {FORMAT!r}; it holds {_holds(ckpt)})"
        )
    missing = [k for k in ("model_name", "model_kwargs", "model", "data_info") if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}")
    if ckpt.get("metrics") and ckpt.get("accuracy_unit") != ACCURACY_UNIT:  # percentages: an older checkpoint
        ckpt["metrics"] = [_percent_to_fraction(row) for row in ckpt["metrics"]]
        ckpt["accuracy_unit"] = ACCURACY_UNIT
    return ckpt


def _percent_to_fraction(row: dict[str, Any]) -> dict[str, Any]:
    """One metrics row of an older checkpoint with its accuracies (%) as fractions."""
    return {k: v / 100 if k in ACCURACY_KEYS and v is not None else v for k, v in row.items()}


def model_from_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", ema: bool = False
) -> tuple[nn.Module, DatasetInfo, dict[str, Any]]:
    """Rebuild the model stored at ``path`` (with ``ema``: its model EMA's weights); returns ``(model in eval mode,
    data info, checkpoint dict)``. The checkpoints of other commands (denoisers, the synthetic task's model) raise a
    ``ValueError`` naming the command that reads them."""
    ckpt = load_checkpoint(path, map_location)
    other = OTHER_CHECKPOINTS.get(ckpt.get("kind")) or OTHER_CHECKPOINTS.get(ckpt["model_name"])
    if other is not None:
        raise ValueError(f"{str(path)!r} is {other}")
    if ema and "ema" not in ckpt:
        raise ValueError(f"checkpoint {str(path)!r} holds no model EMA (the run had ema_decay 0)")
    model = create_model(ckpt["model_name"], **ckpt["model_kwargs"])
    model.load_state_dict(ckpt["ema" if ema else "model"])
    return model.eval(), DatasetInfo.from_dict(ckpt["data_info"]), ckpt


def classifier_from_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", ema: bool = False
) -> tuple[nn.Module, DatasetInfo]:
    """The checkpoint's model (its EMA with ``ema``) behind its input normalisation: maps ``[0, 1]`` images to
    logits."""
    model, info, _ = model_from_checkpoint(path, map_location, ema)
    return with_normalize(model, info.mean, info.std).eval(), info


def trained_on(ckpt: dict[str, Any]) -> dict[str, Any]:
    """What the checkpoint ``ckpt`` was trained on and for how long: ``data`` (the spec), ``img_size`` (the images'
    ``(H, W)``), ``resize`` (the run's ``img_size`` option, ``None``: the data's own size), ``epochs`` (run),
    ``schedule`` (epochs of its schedule) and ``train_limit`` (``None``: every training image). Checkpoints without a
    training config (written by the library) give what their ``data_info`` and ``metrics`` hold."""
    info = DatasetInfo.from_dict(ckpt["data_info"])
    config = ckpt.get("config") or {}
    epochs = ckpt.get("epoch", len(ckpt.get("metrics") or []) or None)
    return {
        "data": config.get("data") or info.name,
        "img_size": tuple(info.img_size),
        "resize": config.get("img_size"),
        "epochs": epochs,
        "schedule": config.get("epochs", epochs),
        "train_limit": config.get("train_limit"),
    }


def describe_budget(trained: dict[str, Any]) -> str:
    """``trained`` (of :func:`trained_on`) in words: ``"2 of 12 epochs on a random subset of 300 training images
    (train_limit) of fashion_mnist at 28x28"``."""
    epochs, schedule = trained["epochs"], trained["schedule"]
    done = "epochs unknown" if epochs is None else plural(epochs, "epoch")
    if epochs is not None and schedule is not None and schedule != epochs:
        done = f"{epochs} of {plural(schedule, 'epoch')} (stopped early)"
    limit = trained["train_limit"]
    images = "every training image" if limit is None else f"a random subset of {limit:,} training images (train_limit)"
    h, w = trained["img_size"]
    return f"{done} on {images} of {trained['data']} at {h}x{w}"


def same_data(a: str, b: str) -> bool:
    """Whether two dataset specs name the same data: the same name (``NAME:PATH`` may differ in its path), and for
    the synthetic task the same parameters."""
    name_a, name_b = a.partition(":")[0], b.partition(":")[0]
    return a == b if name_a == name_b == "synthetic" else name_a == name_b


def check_data(
    path: str | os.PathLike,
    ckpt: dict[str, Any],
    data: str,
    img_size: tuple[int, int] | None,
    *,
    other_data: bool = False,
    flag: str = "--data",
    size_flag: str = "--img-size",
    allow_flag: str = "--other-data",
) -> bool:
    """Refuse to score the checkpoint at ``path`` on ``data`` at ``img_size`` (``(H, W)``; ``None``: unchecked)
    when it was trained on other data or at another size, with a one-line ``ValueError`` naming both; ``other_data``
    allows it (the caller says so in its output). Returns whether the data differs from the training data."""
    trained = trained_on(ckpt)
    differs, fixes = [], []
    if not same_data(trained["data"], data):
        differs.append(f"trained on {trained['data']!r}, {flag} is {data!r}")
        fixes.append(f"leave out {flag} to use the checkpoint's own data")
    if img_size is not None and tuple(img_size) != trained["img_size"]:
        (h, w), (hh, ww) = trained["img_size"], img_size
        differs.append(f"trained at {h}x{w}, the data here is {hh}x{ww}")
        fixes.append(f"use {size_flag} {h}" if h == w else f"load the data at {h}x{w}")
    if differs and not other_data:
        raise ValueError(
            f"checkpoint {str(path)!r} was {'; '.join(differs)}: {' and '.join(fixes)}, or pass {allow_flag} to "
            "score it on other data on purpose"
        )
    return bool(differs)


def _looks_like(path: Path) -> str | None:
    """What a file that ``torch.load`` cannot read looks like (``None``: binary data, e.g. a damaged checkpoint)."""
    with path.open("rb") as f:
        head = f.read(4096)
    if not head:
        return "an empty file"
    if any(byte < 32 and byte not in b"\t\n\f\r" for byte in head):  # control bytes: binary (a zip, a pickle)
        return None
    for cut in (head, head[:-3]):  # the first 4 KiB may end inside a multi-byte character
        try:
            text = cut.decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    first = (text.strip().splitlines() or [""])[0][:60]
    if path.suffix.lower() in (".yaml", ".yml"):
        kind = "a YAML file"
    elif path.suffix.lower() == ".json" or first.startswith(("{", "[")):
        kind = "a JSON file"
    else:
        kind = "a text file"
    return f"{kind}, starting {first!r}"


def _holds(obj: Any) -> str:
    """A short description of what ``torch.load`` returned."""
    if isinstance(obj, dict):
        keys = [str(k) for k in list(obj)[:5]]
        tensors = sum(isinstance(v, torch.Tensor) for v in obj.values())
        what = f"a dict of {len(obj)} entries ({', '.join(keys)}{', ...' if len(obj) > 5 else ''})"
        return what + (" - a bare state_dict?" if obj and tensors == len(obj) else "")
    return f"a {type(obj).__name__}"
