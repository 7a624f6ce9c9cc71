"""The spatial-structure sensitivity sweep: how a classifier's predictions change when the layout of its input is
destroyed (block shuffle, block rotation) or parts of it are hidden (block mask).

``sensitivity_sweep(model, loader, normalize=...)`` evaluates the clean images once and every perturbation setting
``repeats`` times in a single pass over ``loader``, and returns a :class:`SensitivityResult` whose ``rows()`` feed
:func:`~spatialvit.report.tables.save_table`. Per setting it reports top-1 (and top-5) accuracy with its standard
error over repeats, retained accuracy (perturbed / clean), sensitivity (1 - retained), the label-free prediction flip
rate and mean KL(clean || perturbed); per model the Spatial Sensitivity Index (SSI): the mean sensitivity over the
shuffle settings, and separately over the mask (and rotation) settings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._text import plural
from ..data import Normalize
from ..report.tables import save_table
from ..runtime import progress_bar, split_classifier
from .config import SweepConfig
from .perturb import KINDS, Perturbation, block_size, is_aligned, make_settings  # noqa: F401  (re-exported)


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (``nan`` for fewer than two values)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


@dataclass
class SettingResult:
    """Per-repeat metrics of one perturbation setting (accuracies ``nan`` on unlabeled data)."""

    perturbation: Perturbation
    aligned: bool | None
    acc1: list[float]
    acc5: list[float] | None
    flip: list[float]
    kl: list[float]


@dataclass
class SensitivityResult:
    """Everything a sweep measured for one model; ``rows()`` / ``summary()`` / ``save()`` turn it into tables."""

    model: str
    num_images: int
    image_size: tuple[int, int]
    patch_size: tuple[int, int] | None
    clean_acc1: float
    clean_acc5: float | None
    settings: list[SettingResult]
    config: dict[str, Any] = field(default_factory=dict)

    def _row(self, s: SettingResult) -> dict[str, Any]:
        p = s.perturbation
        acc1, acc1_se = _mean_se(s.acc1)
        flip, flip_se = _mean_se(s.flip)
        kl, kl_se = _mean_se(s.kl)
        retained = acc1 / self.clean_acc1 if self.clean_acc1 > 0 else math.nan
        row = {
            "model": self.model,
            "kind": p.kind,
            "grid": p.grid_label,
            "blocks": p.grid[0] * p.grid[1],
            "ratio": p.ratio,
            "fill": p.fill,
            "aligned": {True: "yes", False: "no", None: "n/a"}[s.aligned],
            "repeats": len(s.acc1),
            "acc1": acc1,
            "acc1_se": acc1_se,
        }
        if s.acc5 is not None:
            row["acc5"], row["acc5_se"] = _mean_se(s.acc5)
        row |= {
            "retained": retained,
            "sensitivity": 1.0 - retained,
            "sensitivity_se": acc1_se / self.clean_acc1 if self.clean_acc1 > 0 else math.nan,
            "flip_rate": flip,
            "flip_rate_se": flip_se,
            "kl": kl,
            "kl_se": kl_se,
        }
        return row

    def rows(self) -> list[dict[str, Any]]:
        """One row for the clean images, then one per setting (columns as in the docs)."""
        clean = {"model": self.model, "kind": "clean", "grid": "1x1", "blocks": 1, "ratio": None, "fill": None}
        clean |= {"aligned": "n/a", "repeats": 1, "acc1": self.clean_acc1, "acc1_se": math.nan}
        if self.clean_acc5 is not None:
            clean |= {"acc5": self.clean_acc5, "acc5_se": math.nan}
        clean |= {"retained": 1.0, "sensitivity": 0.0, "sensitivity_se": math.nan}
        clean |= {"flip_rate": 0.0, "flip_rate_se": math.nan, "kl": 0.0, "kl_se": math.nan}
        return [clean] + [self._row(s) for s in self.settings]

    def summary(self) -> dict[str, Any]:
        """The per-model row: clean accuracy and, per kind, the Spatial Sensitivity Index (mean sensitivity over
        that kind's settings) with the mean flip rate beside it."""
        row: dict[str, Any] = {"model": self.model, "images": self.num_images, "clean_acc1": self.clean_acc1}
        if self.clean_acc5 is not None:
            row["clean_acc5"] = self.clean_acc5
        rows = self.rows()[1:]
        for kind in KINDS:
            mine = [r for r in rows if r["kind"] == kind]
            if mine:
                row[f"ssi_{kind}"] = sum(r["sensitivity"] for r in mine) / len(mine)
                row[f"flip_{kind}"] = sum(r["flip_rate"] for r in mine) / len(mine)
        return row

    def save(self, out_dir: str | Path, name: str = "sensitivity") -> dict[str, Path]:
        """Write ``name.{csv,json,md}`` (every setting) and ``name_summary.{csv,json,md}`` (the SSI row)."""
        paths = save_table(self.rows(), out_dir, name)
        paths |= {f"summary_{k}": v for k, v in save_table([self.summary()], out_dir, f"{name}_summary").items()}
        return paths


def compare(results: Sequence[SensitivityResult]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Several models side by side: ``(every row of every model, one summary row per model)``."""
    return [r for res in results for r in res.rows()], [res.summary() for res in results]


def save_comparison(results: Sequence[SensitivityResult], out_dir: str | Path) -> dict[str, Path]:
    """Write ``sweep.{csv,json,md}`` and ``summary.{csv,json,md}`` for several models into ``out_dir``."""
    rows, summary = compare(results)
    paths = {f"sweep_{k}": v for k, v in save_table(rows, out_dir, "sweep").items()}
    return paths | {f"summary_{k}": v for k, v in save_table(summary, out_dir, "summary").items()}


def model_patch_size(model: nn.Module) -> tuple[int, int] | None:
    """The patch size of a ViT-like model (``model.patch_size`` or timm's ``model.patch_embed.patch_size``), else
    ``None`` (CNNs)."""
    inner = split_classifier(model)[1]
    p = getattr(inner, "patch_size", None)
    if p is None:
        p = getattr(getattr(inner, "patch_embed", None), "patch_size", None)
    if p is None:
        return None
    return (p, p) if isinstance(p, int) else (int(p[0]), int(p[1]))


def check_input(model: nn.Module, image_shape: Sequence[int]) -> None:
    """Raise a clear error when images ``[C, H, W]`` do not fit what ``model`` declares (``in_chans``, and
    ``img_size`` unless it has ``dynamic_img_size``)."""
    inner = split_classifier(model)[1]
    C, H, W = image_shape
    chans = getattr(inner, "in_chans", None)
    if chans is not None and chans != C:
        raise ValueError(f"the model takes {chans}-channel images but the data has {plural(C, 'channel')}")
    size = getattr(inner, "img_size", None) or getattr(getattr(inner, "patch_embed", None), "img_size", None)
    if size is not None and not getattr(inner, "dynamic_img_size", False):
        size = (size, size) if isinstance(size, int) else tuple(size)
        if tuple(size) != (H, W):
            raise ValueError(
                f"the model expects {size[0]}x{size[1]} images but the data is {H}x{W}; load the data at the "
                f"model's size (e.g. load_dataset(..., img_size={size[0]}) or --img-size {size[0]})"
            )


def _normalizer(normalize: Normalize | tuple | None, model: nn.Module) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """(module applied after perturbing, normalisation mean, std) — see :func:`sensitivity_sweep`."""
    if isinstance(normalize, Normalize):
        norm = normalize
    elif isinstance(normalize, (tuple, list)) and len(normalize) == 2:
        norm = Normalize(*normalize)
    elif normalize is None:
        inner = model[0] if isinstance(model, nn.Sequential) and len(model) else None
        stats = (inner.mean, inner.std) if isinstance(inner, Normalize) else (torch.zeros(1), torch.ones(1))
        return nn.Identity(), stats[0].flatten(), stats[1].flatten()
    else:
        raise ValueError(
            "normalize must be a Normalize module, a (mean, std) pair, or None for a model that takes "
            f"[0, 1] pixels, got {normalize!r}"
        )
    return norm, norm.mean.flatten(), norm.std.flatten()


def _split_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(images, labels)``, ``(images,)`` or ``images`` -> ``(images, labels or None)``."""
    if isinstance(batch, torch.Tensor):
        return batch, None
    if isinstance(batch, (tuple, list)) and len(batch) in (1, 2):
        return batch[0], (torch.as_tensor(batch[1]) if len(batch) == 2 else None)
    raise ValueError("the loader must yield images, (images,) or (images, labels) batches")


def _data_mean(loader: Iterable) -> torch.Tensor:
    """Per-channel mean pixel of the loader's images: the data set's ``info.mean`` when it has one, else measured."""
    info = getattr(getattr(loader, "dataset", None), "info", None)
    if info is not None:
        return torch.tensor(info.mean)
    total, count = 0.0, 0
    for batch in loader:
        x = _split_batch(batch)[0].double()
        total, count = total + x.sum(dim=(0, 2, 3)), count + x.numel() // x.shape[1]
    return (total / count).float()


def _batch_stats(clean_logp: torch.Tensor, logp: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """Sums over a batch of log-probabilities ``[B, classes]``: (top-1 hits, top-5 hits, prediction flips against
    the clean arg-max, KL(clean || perturbed)); hits are 0 without labels. Returns float64 ``[4]``."""
    pred = logp.argmax(-1)
    flips = (pred != clean_logp.argmax(-1)).sum()
    kl = (clean_logp.exp() * (clean_logp - logp)).sum(-1).clamp_min(0).sum()
    if labels is None:
        hit1 = hit5 = torch.zeros((), device=logp.device)
    else:
        hit1 = (pred == labels).sum()
        hit5 = (logp.topk(min(5, logp.shape[1])).indices == labels[:, None]).any(-1).sum()
    return torch.stack([hit1, hit5, flips, kl]).double()


@dataclass
class _Sweep:
    """What one sweep needs besides the data: the settings, the model's forward and the perturbation options."""

    model: nn.Module
    settings: list[Perturbation]
    repeats: int
    seed: int
    norm: nn.Module
    device: torch.device
    amp: bool
    amp_dtype: torch.dtype
    options: dict[str, Any]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[B, classes]`` of pixel images ``x``."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp):
            logits = self.model(self.norm(x))
        if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
            raise ValueError(
                f"the model must map [B, C, H, W] images to logits [B, classes], got {tuple(logits.shape)}"
            )
        return F.log_softmax(logits.float(), dim=-1)


@torch.inference_mode()
def sensitivity_sweep(
    model: nn.Module,
    loader: Iterable,
    *,
    normalize: Normalize | tuple[Sequence[float], Sequence[float]] | None,
    config: SweepConfig | None = None,
    seed: int = 0,
    data_mean: Sequence[float] | None = None,
    patch_size: int | tuple[int, int] | None = None,
    name: str | None = None,
    device: str | torch.device | None = None,
    amp: bool | None = None,
    progress: bool = True,
    **settings: Any,
) -> SensitivityResult:
    """Evaluate ``model`` on clean and perturbed images from ``loader`` (one pass; see the module docstring).

    Args:
        model: any ``nn.Module`` mapping a batch of images to logits ``[B, classes]``; put in eval mode.
        loader: yields ``(images [B, C, H, W] in [0, 1], labels)`` — or images alone (accuracies become ``nan``).
            Keep its order fixed (``shuffle=False``): image ``i`` always gets the same perturbation.
        normalize: the model's input normalisation, applied *after* perturbing: a :class:`Normalize`, a
            ``(mean, std)`` pair, or ``None`` when the model takes ``[0, 1]`` pixels itself (then a leading
            ``Normalize`` of an ``nn.Sequential`` model supplies the statistics the mask fills use).
        config, settings: the sweep (:class:`SweepConfig`; keyword ``settings`` such as ``shuffle_grids=[2, 4]``
            or ``repeats=2`` replace its keys).
        seed: base seed; every (setting, repeat, image) gets its own perturbation derived from it.
        data_mean: per-channel data-set mean for ``mask_fill="mean"`` (default: the data set's ``info.mean``, or
            measured over ``loader``).
        patch_size: the model's patch size for the ``aligned`` column (default: read from the model; CNNs "n/a").
        name: the model's name in the tables (default: its class name).
        device: where to run (default: the model's device); amp: autocast on GPU (default: on for CUDA).
        progress: show a tqdm progress bar.
    """
    config = SweepConfig.from_dict(settings, config)
    sweep = _setup_sweep(
        model, loader, normalize, config=config, seed=seed, data_mean=data_mean, device=device, amp=amp
    )
    was_training = model.training
    model.eval()
    try:
        totals = _run_sweep(sweep, loader, name, progress)
    finally:
        model.train(was_training)
    patch = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    return _sweep_result(sweep, totals, patch or model_patch_size(model), name)


def _setup_sweep(
    model: nn.Module,
    loader: Iterable,
    normalize: Normalize | tuple | None,
    config: SweepConfig,
    seed: int,
    data_mean: Sequence[float] | None,
    device: str | torch.device | None,
    amp: bool | None,
) -> _Sweep:
    """The settings, normalisation, device and perturbation options of a sweep."""
    settings = config.settings()
    norm, mean, std = _normalizer(normalize, model)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    amp = device.type == "cuda" if amp is None else amp
    amp_dtype = torch.bfloat16 if device.type != "cuda" or torch.cuda.is_bf16_supported() else torch.float16
    options = {"mean": mean.to(device), "std": std.to(device)}
    options |= {"exclude_identity": config.exclude_identity, "shared": config.shared}
    if any(s.fill == "mean" for s in settings):
        options["data_mean"] = torch.as_tensor(data_mean if data_mean is not None else _data_mean(loader)).to(device)
    return _Sweep(
        model=model,
        settings=settings,
        repeats=config.repeats,
        seed=seed,
        norm=norm.to(device),
        device=device,
        amp=amp,
        amp_dtype=amp_dtype,
        options=options,
    )


@dataclass
class _Totals:
    """Sums over the images seen: ``stats[setting, repeat] = (top-1 hits, top-5 hits, flips, KL)``, ``clean`` hits."""

    stats: torch.Tensor
    clean: torch.Tensor
    seen: int = 0
    labeled: bool = True
    image_size: tuple[int, int] | None = None
    classes: int = 0


def _run_sweep(sweep: _Sweep, loader: Iterable, name: str | None, progress: bool) -> _Totals:
    """The batch loop: every batch clean once, then under every (setting, repeat)."""
    totals = _Totals(
        torch.zeros(len(sweep.settings), sweep.repeats, 4, dtype=torch.float64, device=sweep.device),
        torch.zeros(2, dtype=torch.float64, device=sweep.device),
    )
    try:
        passes = len(loader) * (1 + len(sweep.settings) * sweep.repeats)  # type: ignore[arg-type]
    except TypeError:
        passes = None
    bar = progress_bar(total=passes, desc=f"sensitivity {name or ''}".strip(), unit="pass", enabled=progress)
    try:
        for batch in loader:
            x, y = _split_batch(batch)
            if totals.image_size is None:  # check everything before the first forward pass
                check_input(sweep.model, x.shape[1:])
                for s in sweep.settings:
                    block_size(x.shape[-2:], s.grid)
                totals.image_size = tuple(x.shape[-2:])
                totals.labeled = y is not None
            if not x.is_floating_point():
                raise ValueError(f"images must be floats in [0, 1], got {x.dtype}")
            _sweep_batch(sweep, totals, x.to(sweep.device), y, bar)
    finally:
        bar.close()
    if not totals.seen:
        raise ValueError("the loader yielded no images")
    return totals


def _sweep_batch(sweep: _Sweep, totals: _Totals, x: torch.Tensor, y: torch.Tensor | None, bar: Any) -> None:
    """Add one batch's clean and perturbed statistics to ``totals``."""
    index = torch.arange(totals.seen, totals.seen + len(x), device=sweep.device)
    clean_logp = sweep.predict(x)
    bar.update()
    totals.classes = classes = clean_logp.shape[1]
    if totals.labeled:
        y = y.to(sweep.device)
        if int(y.max()) >= classes or int(y.min()) < 0:
            raise ValueError(f"labels must lie in [0, {classes}) for a model with {plural(classes, 'output')}")
    totals.clean += _batch_stats(clean_logp, clean_logp, y)[:2]
    for i, s in enumerate(sweep.settings):
        for r in range(sweep.repeats):
            perturbed = s.apply(x, s.seed(sweep.seed, r), index, **sweep.options)
            totals.stats[i, r] += _batch_stats(clean_logp, sweep.predict(perturbed), y)
            bar.update()
    totals.seen += len(x)


def _sweep_result(sweep: _Sweep, totals: _Totals, patch: tuple[int, int] | None, name: str | None) -> SensitivityResult:
    """Per-image means of the totals as a :class:`SensitivityResult`."""
    per = (totals.stats / totals.seen).tolist()
    nan = float("nan")
    top5 = totals.classes > 5  # top-k only where k < classes: top-5 of 5 classes is always 100 %
    labeled = totals.labeled
    results = [
        SettingResult(
            perturbation=s,
            aligned=is_aligned(totals.image_size, s.grid, patch),
            acc1=[v[0] if labeled else nan for v in per[i]],
            acc5=[v[1] if labeled else nan for v in per[i]] if top5 else None,
            flip=[v[2] for v in per[i]],
            kl=[v[3] for v in per[i]],
        )
        for i, s in enumerate(sweep.settings)
    ]
    clean_acc = (totals.clean / totals.seen).tolist() if labeled else [nan, nan]
    return SensitivityResult(
        model=name or type(split_classifier(sweep.model)[1]).__name__,
        num_images=totals.seen,
        image_size=totals.image_size,
        patch_size=patch,
        clean_acc1=clean_acc[0],
        clean_acc5=clean_acc[1] if top5 else None,
        settings=results,
        config={
            "seed": sweep.seed,
            "repeats": sweep.repeats,
            "exclude_identity": sweep.options["exclude_identity"],
            "shared": sweep.options["shared"],
        },
    )
