"""Block perturbations of image batches: shuffle, mask and rotate the blocks of a grid.

All three act on ``[B, C, H, W]`` pixel images (before normalisation), on any device, as a handful of batched tensor
ops with no Python loop over images. Randomness is *per image*: image ``i`` of a call gets the seed
``hash(seed, index[i])``, where ``index`` holds the images' global positions in the data set, and every random number
the perturbation of that image needs comes from a counter-based integer hash of that seed. Hence

- the same ``seed`` (or a ``torch.Generator`` in the same state) gives the same result, on every device;
- cutting a data set into batches of any size gives the same perturbed images, as long as ``index`` says where
  each batch starts;
- with ``shared=True`` every image of the call gets the same random draw (one permutation for the whole batch).

A grid is an ``int`` ``g`` (``g x g`` blocks) or a ``(rows, cols)`` pair; its blocks must tile the image exactly.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .grids import FILLS, Grid, check_ratio, to_grid

_M32 = 0xFFFFFFFF
# Stream tags keep the random numbers of different uses of one image seed independent.
_SHUFFLE, _MASK, _ROTATE, _NOISE_U, _NOISE_V = 1, 2, 3, 4, 5
_MAX_BLOCKS = 2**16  # sort keys carry the block position in their low 16 bits
_IDENTITY_MISS_LOG2 = 40  # exclude_identity: chance of falling back to a cyclic shift is below 2**-40


def _mul32(x, c: int):
    """``x * c mod 2**32`` for ``x < 2**32`` without overflowing int64 (works on ints and int64 tensors)."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def mix32(x):
    """A 32-bit integer hash (Wellons' *lowbias32*) of ints in ``[0, 2**32)``; ints or int64 tensors alike."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def image_seeds(seed: int, index: torch.Tensor) -> torch.Tensor:
    """Per-image 32-bit seeds ``[B]`` from a base ``seed`` (any int) and global image indices ``index [B]``."""
    s = mix32((seed & _M32) ^ mix32(((seed >> 32) & _M32) ^ 0x9E3779B9))
    index = index.long()
    return mix32(mix32(s ^ (index & _M32)) ^ mix32((index >> 32) & _M32))


def random_bits(seeds: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """``n`` random 32-bit integers per image: ``[B, n]`` int64, a pure function of ``(seeds[b], stream, j)``."""
    counter = mix32(torch.arange(n, device=seeds.device, dtype=torch.long))
    return mix32(mix32(seeds ^ mix32(stream))[:, None] ^ counter[None, :])


def _sort_keys(seeds: torch.Tensor, stream: int, n: int, draws: int = 1) -> torch.Tensor:
    """``draws`` rows of ``n`` distinct random sort keys per image, ``[B, draws, n]``: random high bits with the
    position in the low bits, so ``argsort`` is a tie-free uniform shuffle."""
    if n > _MAX_BLOCKS:
        raise ValueError(f"a grid may have at most {_MAX_BLOCKS} blocks, got {n}")
    position = torch.arange(n, device=seeds.device)
    return (random_bits(seeds, stream, draws * n).view(-1, draws, n) << 16) | position


def _uniform(bits: torch.Tensor) -> torch.Tensor:
    """32-bit integers -> float32 uniforms in ``(0, 1]`` (24-bit resolution)."""
    return ((bits >> 8) + 1).to(torch.float32) * 2.0**-24


def block_size(image_size: Sequence[int], grid: Grid) -> tuple[int, int]:
    """Block height and width of ``grid`` on an ``(H, W)`` image; raises if the blocks do not tile it exactly."""
    rows, cols = to_grid(grid)
    H, W = image_size
    if H % rows or W % cols:
        raise ValueError(
            f"grid {rows}x{cols} does not divide the {H}x{W} image into equal blocks: rows must divide {H} and "
            f"columns must divide {W}"
        )
    return H // rows, W // cols


def is_aligned(image_size: Sequence[int], grid: Grid, patch_size: int | Sequence[int] | None) -> bool | None:
    """Whether every block of ``grid`` is a union of the model's patches (``None`` when it has no patches)."""
    if patch_size is None:
        return None
    ph, pw = (patch_size, patch_size) if isinstance(patch_size, int) else tuple(patch_size)
    bh, bw = block_size(image_size, grid)
    return bh % ph == 0 and bw % pw == 0


def masked_count(ratio: float, num_blocks: int) -> int:
    """``round(ratio * num_blocks)``, halves rounded up: how many blocks :func:`block_mask` replaces."""
    return math.floor(check_ratio(ratio) * num_blocks + 0.5)


def _seeds(
    images: torch.Tensor,
    seed: int | None,
    generator: torch.Generator | None,
    index: int | torch.Tensor | None,
    shared: bool,
) -> torch.Tensor:
    """Per-image seeds ``[B]`` on the images' device (see the module docstring)."""
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor [B, C, H, W], got {images.dtype} {tuple(images.shape)}")
    if seed is not None and generator is not None:
        raise ValueError("give either seed or generator, not both")
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device if generator else None))
    B, device = images.shape[0], images.device
    if shared:
        return image_seeds(seed, torch.full((B,), -1, device=device, dtype=torch.long))
    if index is None or isinstance(index, int):
        index = torch.arange(B, device=device) + (index or 0)
    elif index.shape != (B,):
        raise ValueError(f"index must hold one global index per image, shape ({B},), got {tuple(index.shape)}")
    return image_seeds(seed, index.to(device))


def _blocks(images: torch.Tensor, grid: Grid) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """``[B, C, H, W]`` -> blocks ``[B, rows*cols, C, bh, bw]`` (row-major), plus ``(rows, cols, bh, bw)``."""
    rows, cols = to_grid(grid)
    bh, bw = block_size(images.shape[-2:], grid)
    B, C = images.shape[:2]
    blocks = images.reshape(B, C, rows, bh, cols, bw).permute(0, 2, 4, 1, 3, 5).reshape(B, rows * cols, C, bh, bw)
    return blocks, (rows, cols, bh, bw)


def _unblocks(blocks: torch.Tensor, shape: tuple[int, int, int, int]) -> torch.Tensor:
    """Inverse of :func:`_blocks`."""
    rows, cols, bh, bw = shape
    B, _, C = blocks.shape[:3]
    return blocks.reshape(B, rows, cols, C, bh, bw).permute(0, 3, 1, 4, 2, 5).reshape(B, C, rows * bh, cols * bw)


def _permutations(seeds: torch.Tensor, n: int, exclude_identity: bool) -> torch.Tensor:
    """One uniformly random permutation of ``range(n)`` per seed: ``[B, n]`` (non-identity if asked, n >= 2)."""
    candidates = 1
    if exclude_identity and n >= 2:
        candidates = math.ceil(_IDENTITY_MISS_LOG2 / math.log2(math.factorial(min(n, 20))))
    perms = torch.argsort(_sort_keys(seeds, _SHUFFLE, n, candidates), dim=-1)
    if candidates == 1:
        return perms[:, 0]
    # Rejection sampling done for all images at once: keep each image's first non-identity candidate.
    moved = (perms != torch.arange(n, device=seeds.device)).any(-1)
    first = moved.int().argmax(-1)
    perm = perms[torch.arange(len(perms), device=seeds.device), first]
    # All candidates were the identity (probability < 2**-40): fall back to a cyclic shift.
    return torch.where(moved.any(-1, keepdim=True), perm, perm.roll(1, dims=-1))


def block_shuffle(
    images: torch.Tensor,
    grid: Grid,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    index: int | torch.Tensor | None = None,
    exclude_identity: bool = False,
    shared: bool = False,
) -> torch.Tensor:
    """Cut each image into ``grid`` blocks and permute the blocks at random; pixels inside a block keep their order.

    Args:
        images: ``[B, C, H, W]`` float images.
        grid: ``g`` or ``(rows, cols)``; the blocks must tile ``H x W`` exactly.
        seed / generator: the base seed, or a generator to draw it from (global RNG if neither).
        index: global index of each image (``[B]``) or of the first one (int; default 0) — makes the result
            independent of how a data set is cut into batches.
        exclude_identity: never return an image unchanged (needs at least 2 blocks).
        shared: one permutation for every image of the call.

    Returns ``[B, C, H, W]``: output block ``i`` is input block ``perm[b, i]``.
    """
    seeds = _seeds(images, seed, generator, index, shared)
    blocks, shape = _blocks(images, grid)
    perm = _permutations(seeds, blocks.shape[1], exclude_identity)
    return _unblocks(torch.take_along_dim(blocks, perm[:, :, None, None, None], dim=1), shape)


def _channel_values(value: float | Sequence[float] | torch.Tensor, images: torch.Tensor, name: str) -> torch.Tensor:
    """A scalar or per-channel value -> ``[1, C, 1, 1]`` on the images' device and dtype."""
    v = torch.as_tensor(value, dtype=images.dtype, device=images.device).flatten()
    C = images.shape[1]
    if v.numel() not in (1, C):
        raise ValueError(f"{name} must be a scalar or have one value per channel ({C}), got {v.numel()} values")
    return v.expand(C).reshape(1, C, 1, 1)


def block_mask(
    images: torch.Tensor,
    grid: Grid,
    ratio: float,
    *,
    fill: str = "zero",
    mean: float | Sequence[float] | torch.Tensor = 0.0,
    std: float | Sequence[float] | torch.Tensor = 1.0,
    data_mean: float | Sequence[float] | torch.Tensor | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    index: int | torch.Tensor | None = None,
    shared: bool = False,
) -> torch.Tensor:
    """Replace ``round(ratio * rows * cols)`` randomly chosen blocks of each image (halves round up) by a fill.

    ``mean``/``std`` are the model's input normalisation (per channel, pixel scale). Fills:

    - ``"zero"``: zero *after* normalisation, i.e. the pixel value ``mean``;
    - ``"mean"``: the data set's mean pixel ``data_mean`` (required);
    - ``"noise"``: Gaussian noise ``N(mean, std)`` per pixel, i.e. standard normal after normalisation (unclipped).

    ``seed``/``generator``/``index``/``shared`` as in :func:`block_shuffle`. Returns ``[B, C, H, W]``.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    seeds = _seeds(images, seed, generator, index, shared)
    rows, cols = to_grid(grid)
    bh, bw = block_size(images.shape[-2:], grid)
    n, k = rows * cols, masked_count(ratio, rows * cols)
    B, C, H, W = images.shape
    chosen = torch.argsort(_sort_keys(seeds, _MASK, n)[:, 0], dim=-1)[:, :k]
    hit = torch.zeros(B, n, dtype=torch.bool, device=images.device).scatter_(1, chosen, True)
    hit = hit.view(B, 1, rows, 1, cols, 1).expand(B, 1, rows, bh, cols, bw).reshape(B, 1, H, W)
    mu = _channel_values(mean, images, "mean")
    if fill == "zero":
        value = mu
    elif fill == "mean":
        if data_mean is None:
            raise ValueError("fill='mean' needs data_mean, the data set's per-channel mean pixel")
        value = _channel_values(data_mean, images, "data_mean")
    else:
        u = _uniform(random_bits(seeds, _NOISE_U, C * H * W)).view(B, C, H, W)
        v = _uniform(random_bits(seeds, _NOISE_V, C * H * W)).view(B, C, H, W)
        z = torch.sqrt(-2.0 * torch.log(u)) * torch.cos(2.0 * math.pi * v)  # Box-Muller
        value = mu + _channel_values(std, images, "std") * z.to(images.dtype)
    return torch.where(hit, value, images)


def block_rotate(
    images: torch.Tensor,
    grid: Grid,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    index: int | torch.Tensor | None = None,
    shared: bool = False,
) -> torch.Tensor:
    """Rotate each (square) block of ``grid`` by an independent random multiple of 90° (counter-clockwise, as
    ``torch.rot90``); blocks stay in place. Arguments as in :func:`block_shuffle`. Returns ``[B, C, H, W]``."""
    seeds = _seeds(images, seed, generator, index, shared)
    blocks, shape = _blocks(images, grid)
    B, n, C, bh, bw = blocks.shape
    if bh != bw:
        raise ValueError(f"block_rotate needs square blocks, but grid {grid!r} gives {bh}x{bw} blocks")
    turns = random_bits(seeds, _ROTATE, n) & 3  # [B, n] in {0, 1, 2, 3}
    pixel = torch.arange(bh * bw, device=images.device).view(bh, bw)
    maps = torch.stack([torch.rot90(pixel, k, dims=(0, 1)).flatten() for k in range(4)])  # [4, bh*bw]
    src = maps[turns][:, :, None, :].expand(B, n, C, bh * bw)
    return _unblocks(blocks.reshape(B, n, C, bh * bw).gather(-1, src).view(B, n, C, bh, bw), shape)


KINDS = ("shuffle", "mask", "rotate")


@dataclass(frozen=True)
class Perturbation:
    """One setting of the sweep: ``kind`` on a ``(rows, cols)`` grid (masks: with ``ratio`` and ``fill``)."""

    kind: str
    grid: tuple[int, int]
    ratio: float | None = None
    fill: str | None = None

    @property
    def grid_label(self) -> str:
        return f"{self.grid[0]}x{self.grid[1]}"

    @property
    def label(self) -> str:
        extra = f" r={self.ratio:g} ({self.fill})" if self.kind == "mask" else ""
        return f"{self.kind} {self.grid_label}{extra}"

    def seed(self, base: int, repeat: int) -> int:
        """The base seed of repeat ``repeat``: a hash of (``base``, this setting, ``repeat``), stable across runs."""
        h = mix32(mix32(mix32(base & 0xFFFFFFFF) ^ zlib.crc32(self.label.encode())) ^ mix32(repeat & 0xFFFFFFFF))
        return (h << 32) | ((base >> 32) & 0xFFFFFFFF)

    def apply(self, images: torch.Tensor, seed: int, index: torch.Tensor, **options: Any) -> torch.Tensor:
        """Perturb pixel images ``[B, C, H, W]``; ``options``: ``mean``, ``std``, ``data_mean`` (masks),
        ``exclude_identity`` (shuffles) and ``shared``."""
        shared = options.get("shared", False)
        if self.kind == "shuffle":
            exclude = options.get("exclude_identity", False)
            return block_shuffle(images, self.grid, seed=seed, index=index, exclude_identity=exclude, shared=shared)
        if self.kind == "rotate":
            return block_rotate(images, self.grid, seed=seed, index=index, shared=shared)
        return block_mask(
            images,
            self.grid,
            self.ratio,
            fill=self.fill,
            mean=options.get("mean", 0.0),
            std=options.get("std", 1.0),
            data_mean=options.get("data_mean"),
            seed=seed,
            index=index,
            shared=shared,
        )


def make_settings(
    *,
    shuffle_grids: Iterable[Grid],
    mask_grids: Iterable[Grid] | None,
    mask_ratios: Iterable[float],
    mask_fill: str,
    rotate_grids: Iterable[Grid],
) -> list[Perturbation]:
    """The sweep's settings: every shuffle grid, every (mask grid x ratio) pair and every rotation grid
    (``mask_grids`` ``None``: the shuffle grids). The options are :class:`~.config.SweepConfig`'s, which holds their
    defaults (:meth:`~.config.SweepConfig.settings`)."""
    if mask_fill not in FILLS:
        raise ValueError(f"mask_fill must be one of {', '.join(FILLS)}, got {mask_fill!r}")
    shuffle_grids = [to_grid(g) for g in shuffle_grids]
    mask_grids = shuffle_grids if mask_grids is None else [to_grid(g) for g in mask_grids]
    ratios = [check_ratio(r) for r in mask_ratios]
    return (
        [Perturbation("shuffle", g) for g in shuffle_grids]
        + [Perturbation("mask", g, r, mask_fill) for g in mask_grids for r in ratios]
        + [Perturbation("rotate", to_grid(g)) for g in rotate_grids]
    )
