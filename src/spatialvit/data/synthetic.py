"""Spatially structured synthetic data (Jelassi, Sander & Li 2022): the label lives in one hidden group of patches.

An input is ``D`` patch vectors ``X_1..X_D`` in ``R^d`` on a grid. The patch indices are split into ``L`` groups of
``C`` patches (local ``k x k`` blocks of the grid, or a random partition). One group, drawn uniformly, carries the
signal ``X_j = y w* + xi_j``; every other patch is a scattered distractor ``X_j = delta_j w* + xi_j`` with
``P(delta_j = +-1) = q / 2``; the noise ``xi ~ N(0, sigma^2 (I - w* w*^T))``. With ``num_classes > 2`` each class has
its own unit feature ``w_k`` (the signal group carries ``w_y``; a distractor carries a uniformly drawn ``w_c``).

The same samples render as images (each patch a ``p x p`` pixel block) so they feed the ViTs and the sensitivity
benchmark: ``load_dataset("synthetic:grid=8,d=48,partition=random")``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from .base import DatasetInfo, TensorImageDataset, channel_stats, register_dataset

PIXEL_SCALE = 0.25  # image rendering: pixel = clamp(0.5 + PIXEL_SCALE * value, 0, 1), i.e. values in [-2, 2]
SPLIT_SEED_OFFSET = {"train": 0, "test": 1_000_003}  # train/test draws of one task use disjoint seeds


@dataclass(frozen=True)
class SyntheticConfig:
    """Every constant of the data model (defaults: 8x8 grid of 2x2 local groups, d=48 renders as 32x32 RGB).

    Args:
        grid: patch grid ``(H, W)``; ``D = H * W``.
        d: patch dimension.
        group: group shape ``(kh, kw)``; ``C = kh * kw`` patches per group (a block for ``partition='local'``).
        partition: ``'local'`` (k x k blocks of the grid) or ``'random'`` (a seeded random partition, same sizes).
        q: distractor probability per patch; ``None`` means ``log(d) / D``.
        sigma: noise standard deviation; ``None`` means ``1 / sqrt(d)`` (noise variance ``1/d``).
        num_classes: 2 (labels ``y = +-1`` with one feature) or more (one feature per class).
        feature: index of the task's first feature in the seeded orthonormal feature set (transfer: a new task on
            the same groups uses another index, hence an orthogonal feature).
        task_seed: seed of the partition and of the features (the *task*); samples are seeded separately.
        patch_pixels: side ``p`` of the pixel block of one patch in the image rendering.
        in_chans: image channels; ``d <= p * p * in_chans`` is required.
    """

    grid: tuple[int, int] = (8, 8)
    d: int = 48
    group: tuple[int, int] = (2, 2)
    partition: str = "local"
    q: float | None = None
    sigma: float | None = None
    num_classes: int = 2
    feature: int = 0
    task_seed: int = 0
    patch_pixels: int = 4
    in_chans: int = 3

    def __post_init__(self) -> None:
        grid, group = tuple(self.grid), tuple(self.group)
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "group", group)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"grid must be two positive ints (H, W), got {self.grid}")
        if len(group) != 2 or min(group) < 1:
            raise ValueError(f"group must be two positive ints (kh, kw), got {self.group}")
        if self.partition not in ("local", "random"):
            raise ValueError(f"partition must be 'local' or 'random', got {self.partition!r}")
        if self.partition == "local" and (grid[0] % group[0] or grid[1] % group[1]):
            raise ValueError(f"group={group} must tile grid={grid} for partition='local'")
        if self.num_patches % self.group_size:
            raise ValueError(f"group size {self.group_size} must divide the {self.num_patches} patches")
        if self.d < self.num_features + 1:
            raise ValueError(f"d={self.d} is too small for {self.num_features} feature(s) plus noise")
        if not 0.0 <= self.distractor_prob <= 1.0:
            raise ValueError(f"q must be in [0, 1], got {self.distractor_prob}")
        if self.noise_std < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.feature < 0:
            raise ValueError(f"feature must be >= 0, got {self.feature}")

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def group_size(self) -> int:
        return self.group[0] * self.group[1]

    @property
    def num_groups(self) -> int:
        return self.num_patches // self.group_size

    @property
    def num_features(self) -> int:
        """Features per task: 1 for the binary task, ``num_classes`` otherwise."""
        return 1 if self.num_classes == 2 else self.num_classes

    @property
    def distractor_prob(self) -> float:
        return math.log(self.d) / self.num_patches if self.q is None else float(self.q)

    @property
    def noise_std(self) -> float:
        return 1.0 / math.sqrt(self.d) if self.sigma is None else float(self.sigma)

    def transfer_task(self) -> SyntheticConfig:
        """The same groups with the next, orthogonal feature(s): task 2 of the transfer experiment."""
        return replace(self, feature=self.feature + self.num_features)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_string(cls, spec: str, **overrides: Any) -> SyntheticConfig:
        """Parse ``"grid=8,d=48,group=2x2,partition=random,q=0.05"`` (``8`` means ``8x8``), then ``overrides``."""
        kw: dict[str, Any] = {}
        names = {f.name: f for f in fields(cls)}
        for item in filter(None, (s.strip() for s in spec.split(","))):
            key, sep, value = item.partition("=")
            if not sep or key not in names:
                raise ValueError(
                    f"bad synthetic option {item!r}: expected key=value with key one of {', '.join(names)}"
                )
            kw[key] = _parse_value(key, value)
        kw.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("grid", "group"):
            if isinstance(kw.get(key), int):
                kw[key] = (kw[key], kw[key])
        return cls(**kw)


def _parse_value(key: str, value: str) -> Any:
    if key in ("grid", "group"):
        parts = value.lower().split("x")
        try:
            dims = tuple(int(p) for p in parts)
        except ValueError:
            raise ValueError(f"{key} must look like 8 or 8x8, got {value!r}") from None
        return dims * 2 if len(dims) == 1 else dims
    if key == "partition":
        return value
    if key in ("q", "sigma"):
        return None if value.lower() == "none" else float(value)
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{key} must be an integer, got {value!r}") from None


def make_partition(cfg: SyntheticConfig) -> torch.Tensor:
    """Group id of every patch, ``[D]`` long in ``0..L-1`` (row-major patch order)."""
    H, W = cfg.grid
    kh, kw = cfg.group
    if cfg.partition == "local":
        rows = torch.arange(H).div(kh, rounding_mode="floor")
        cols = torch.arange(W).div(kw, rounding_mode="floor")
        return (rows[:, None] * (W // kw) + cols[None, :]).flatten()
    g = torch.Generator().manual_seed(cfg.task_seed)
    perm = torch.randperm(cfg.num_patches, generator=g)
    groups = torch.empty(cfg.num_patches, dtype=torch.long)
    groups[perm] = torch.arange(cfg.num_patches) // cfg.group_size
    return groups


def make_features(cfg: SyntheticConfig, count: int | None = None) -> torch.Tensor:
    """The task's unit features ``[K, d]``: rows ``feature..feature+K-1`` of a seeded orthonormal set."""
    count = cfg.num_features if count is None else count
    if cfg.feature + count > cfg.d:
        raise ValueError(f"feature index {cfg.feature} + {count} feature(s) exceeds d={cfg.d}")
    g = torch.Generator().manual_seed(cfg.task_seed + 7919)
    basis, _ = torch.linalg.qr(torch.randn(cfg.d, cfg.d, generator=g, dtype=torch.float64))
    return basis.T[cfg.feature : cfg.feature + count].float().contiguous()


@dataclass
class SyntheticSamples:
    """``x [n, D, d]`` patches, ``labels [n]`` in ``0..K-1`` (binary: 0 is ``y=-1``), ``signal_group [n]``."""

    x: torch.Tensor
    labels: torch.Tensor
    signal_group: torch.Tensor

    @property
    def signs(self) -> torch.Tensor:
        """Binary labels as ``y = +-1`` floats."""
        return self.labels.float() * 2 - 1


def sample_synthetic(cfg: SyntheticConfig, n: int, seed: int = 0) -> SyntheticSamples:
    """Draw ``n`` samples of the task ``cfg`` (vectorised; ``seed`` fixes the draw)."""
    if n < 1:
        raise ValueError(f"n must be a positive number of samples, got {n}")
    g = torch.Generator().manual_seed(seed)
    D, K = cfg.num_patches, cfg.num_features
    groups, feats = make_partition(cfg), make_features(cfg)
    signal_group = torch.randint(cfg.num_groups, (n,), generator=g)
    in_signal = groups[None, :] == signal_group[:, None]  # [n, D]
    is_distractor = (torch.rand(n, D, generator=g) < cfg.distractor_prob) & ~in_signal
    if cfg.num_classes == 2:
        labels = torch.randint(2, (n,), generator=g)
        y = labels.float() * 2 - 1
        sign = torch.randint(2, (n, D), generator=g).float() * 2 - 1
        coef = torch.where(in_signal, y[:, None], is_distractor.float() * sign)[..., None]  # [n, D, 1]
    else:
        labels = torch.randint(K, (n,), generator=g)
        other = torch.randint(K, (n, D), generator=g)
        cls = torch.where(in_signal, labels[:, None], other)
        coef = torch.nn.functional.one_hot(cls, K).float() * (in_signal | is_distractor)[..., None].float()
    noise = torch.randn(n, D, cfg.d, generator=g) * cfg.noise_std
    noise = noise - (noise @ feats.T) @ feats  # project out the task's features
    return SyntheticSamples(coef @ feats + noise, labels, signal_group)


def render_images(x: torch.Tensor, cfg: SyntheticConfig) -> torch.Tensor:
    """Patch vectors ``[n, D, d]`` -> images ``[n, C, H*p, W*p]`` in [0, 1].

    A patch becomes one ``p x p x C`` pixel block: the vector itself reshaped when ``d == p*p*C`` (exact, and a ViT
    with patch size ``p`` then sees exactly ``X_j``), else ``R X_j`` with a fixed seeded ``R [p*p*C, d]`` of
    orthonormal columns (inner products kept). Pixels are ``clamp(0.5 + 0.25 * value, 0, 1)``.
    """
    n, D, d = x.shape
    H, W = cfg.grid
    p, C = cfg.patch_pixels, cfg.in_chans
    pix = p * p * C
    if D != H * W or d != cfg.d:
        raise ValueError(f"x must be [n, {H * W}, {cfg.d}] for this config, got {tuple(x.shape)}")
    if d > pix:
        raise ValueError(f"d={d} does not fit a {p}x{p}x{C} pixel block; raise patch_pixels or in_chans")
    if d < pix:
        g = torch.Generator().manual_seed(cfg.task_seed + 104729)
        R, _ = torch.linalg.qr(torch.randn(pix, d, generator=g, dtype=torch.float64))
        x = x @ R.T.to(x.dtype)
    blocks = x.reshape(n, H, W, C, p, p).permute(0, 3, 1, 4, 2, 5).reshape(n, C, H * p, W * p)
    return (0.5 + PIXEL_SCALE * blocks).clamp(0.0, 1.0)


def synthetic_info(cfg: SyntheticConfig, mean: tuple[float, ...], std: tuple[float, ...]) -> DatasetInfo:
    H, W = cfg.grid
    classes = ("-1", "+1") if cfg.num_classes == 2 else tuple(str(k) for k in range(cfg.num_classes))
    size = (H * cfg.patch_pixels, W * cfg.patch_pixels)
    return DatasetInfo(
        name="synthetic",
        num_classes=cfg.num_classes,
        in_chans=cfg.in_chans,
        img_size=size,
        mean=mean,
        std=std,
        classes=classes,
    )


SAMPLE_KEYS = ("n", "n_test", "seed")  # spec keys that size/seed the draw rather than define the task


def split_spec(spec: str) -> tuple[str, dict[str, int]]:
    """``"grid=8,n=5000,seed=1"`` -> (``"grid=8"``, ``{"n": 5000, "seed": 1}``): task options vs sample options."""
    task, draw = [], {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        key, _, value = item.partition("=")
        if key in SAMPLE_KEYS:
            try:
                draw[key] = int(value)
            except ValueError:
                raise ValueError(f"{key} must be an integer, got {value!r}") from None
        else:
            task.append(item)
    return ",".join(task), draw


@register_dataset("synthetic")
def load_synthetic(
    root: str | None,
    split: str,
    img_size: int | None,
    n: int | None = None,
    seed: int = 0,
    **options: Any,
) -> TensorImageDataset:
    """The image rendering. ``root`` is the option string (``synthetic:grid=8,partition=random,n=5000``: the fields
    of :class:`SyntheticConfig` plus ``n`` (training samples, default 10,000), ``n_test`` (default 2,000) and
    ``seed``); keyword ``options``/``n``/``seed`` override it."""
    task, draw = split_spec(root or "")
    cfg = SyntheticConfig.from_string(task, **options)
    if img_size is not None and img_size != cfg.grid[0] * cfg.patch_pixels:
        raise ValueError(
            f"the synthetic images are {cfg.grid[0] * cfg.patch_pixels} pixels wide; set patch_pixels/grid in the "
            f"spec instead of img_size={img_size}"
        )
    seed = draw.get("seed", seed)
    default = draw.get("n", 10_000) if split == "train" else draw.get("n_test", 2_000)
    samples = sample_synthetic(cfg, default if n is None else n, seed=seed + SPLIT_SEED_OFFSET[split])
    # Normalisation statistics from one fixed training draw, so every split and size is normalised alike.
    stats = channel_stats(render_images(sample_synthetic(cfg, 2_000, seed=seed).x, cfg))
    return TensorImageDataset(render_images(samples.x, cfg), samples.labels, synthetic_info(cfg, *stats))
