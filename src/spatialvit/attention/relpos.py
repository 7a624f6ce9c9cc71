"""Learned relative-position bias (Swin, Liu et al. 2021; BEiT, Bao et al. 2022): one learned logit per head and
relative offset between two grid tokens.

On an ``H x W`` grid the table ``T [(2H-1)(2W-1), heads]`` holds a value per offset
``(dy, dx) = (y_i - y_j, x_i - x_j)``, ``dy in [-(H-1), H-1]``, ``dx in [-(W-1), W-1]``, and the bias is
``B[h, i, j] = T[(dy + H - 1) * (2W - 1) + dx + W - 1, h]`` (Swin's ``relative_position_index``). Prefix tokens get
no bias. On another grid (``dynamic_img_size``, or a checkpoint trained at another resolution) the table is resized
as timm does: viewed as ``[heads, 2H-1, 2W-1]`` and resampled bicubically to ``[heads, 2H'-1, 2W'-1]``.

The bias is content-independent and dense (:class:`~.bias.DenseBias`): kernels ``sdpa``, ``bmm``, ``reference``.
"""

from __future__ import annotations

import functools
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import part_options
from .bias import DenseBias
from .registry import register_attention
from .softmax import SoftmaxAttention


@functools.lru_cache(maxsize=16)
def relative_position_index(grid: tuple[int, int]) -> Tensor:
    """``[H*W, H*W]`` (long): the table row of every (query, key) pair of a row-major ``H x W`` grid."""
    H, W = grid
    y, x = torch.arange(H * W) // W, torch.arange(H * W) % W
    return (y[:, None] - y[None] + H - 1) * (2 * W - 1) + (x[:, None] - x[None] + W - 1)


def resize_table(table: Tensor, grid: tuple[int, int], new_grid: tuple[int, int]) -> Tensor:
    """Resample a table ``[(2H-1)(2W-1), heads]`` of ``grid`` to ``new_grid`` (bicubic over the offsets, as timm's
    ``resize_rel_pos_bias_table``); gradients flow to ``table``."""
    if tuple(grid) == tuple(new_grid):
        return table
    (H, W), (H2, W2) = grid, new_grid
    heads = table.shape[1]
    t = table.T.reshape(1, heads, 2 * H - 1, 2 * W - 1)
    t = F.interpolate(t, size=(2 * H2 - 1, 2 * W2 - 1), mode="bicubic", align_corners=False)
    return t.reshape(heads, -1).T


class RelativePositionBias(nn.Module):
    """The bias source: a learned table ``[(2H-1)(2W-1), heads]`` for the grid ``pos_grid`` (trunc-normal, std
    ``init_std``, as Swin), resized for other grids."""

    backends = ("sdpa", "bmm", "reference")
    what = "the relative-position bias"

    def __init__(
        self, dim: int, num_heads: int, *, pos_grid: int | tuple[int, int] = 8, init_std: float = 0.02
    ) -> None:
        super().__init__()
        H, W = (pos_grid, pos_grid) if isinstance(pos_grid, int) else tuple(pos_grid)
        if H < 1 or W < 1:
            raise ValueError(f"pos_grid must be positive, got {pos_grid}")
        self.table_grid = (H, W)
        self.table = nn.Parameter(torch.zeros((2 * H - 1) * (2 * W - 1), num_heads))
        nn.init.trunc_normal_(self.table, std=init_std)

    def grid_bias(self, grid: tuple[int, int]) -> Tensor:
        """``[1, heads, H*W, H*W]``: the bias among the grid tokens of ``grid``."""
        table = resize_table(self.table, self.table_grid, grid)
        index = relative_position_index(tuple(grid)).to(table.device)
        n = index.shape[0]
        return table[index.view(-1)].view(n, n, -1).permute(2, 0, 1)[None]

    def forward(self, x: Tensor, grid: tuple[int, int], num_prefix: int) -> DenseBias:
        return DenseBias(self.grid_bias(grid).to(x.dtype), grid, num_prefix)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # a table trained on another grid: resample it to ours (its grid from its shape: square, or ours' aspect)
        key = prefix + "table"
        old = state_dict.get(key)
        if old is not None and old.shape != self.table.shape:
            state_dict[key] = resize_table(old, _table_grid(old.shape[0], self.table_grid), self.table_grid)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _table_grid(rows: int, like: tuple[int, int]) -> tuple[int, int]:
    """The grid of a table with ``rows`` offsets, ``(2H-1)(2W-1) = rows``: of the grids that fit, the one closest
    to ``like``'s aspect ratio."""
    fits = [(H, (rows // (2 * H - 1) + 1) // 2) for H in range(1, rows + 1) if rows % (2 * H - 1) == 0]
    fits = [(H, W) for H, W in fits if rows == (2 * H - 1) * (2 * W - 1)]
    if not fits:
        raise ValueError(f"a relative-position table of {rows} rows fits no grid ((2H-1)(2W-1) rows)")
    return min(fits, key=lambda g: abs(g[1] / g[0] - like[1] / like[0]))


@register_attention("relpos")
class RelativePositionAttention(SoftmaxAttention):
    """Attention with Swin/BEiT's learned relative-position bias: :class:`SoftmaxAttention` with a
    :class:`RelativePositionBias`; ``options``: those of :class:`RelativePositionBias` (``pos_grid``, ``init_std``)
    and of the mixer. The ViT passes its patch grid as ``pos_grid``."""

    def __init__(self, dim: int, *, pos_grid: int | tuple[int, int] = 8, **options: Any) -> None:
        table, options = part_options(RelativePositionBias, options)
        super().__init__(dim, bias=partial(RelativePositionBias, pos_grid=pos_grid, **table), **options)
