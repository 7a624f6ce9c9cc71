"""2D positional encodings on a token grid (used by the ViT and by positional attention)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sincos_pos_embed_2d(grid: tuple[int, int], dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """Fixed 2D sine-cosine embedding ``[H, W, dim]``: half the channels encode the row, half the column."""
    if dim % 4 != 0:
        raise ValueError(f"2D sin-cos positional embedding needs dim divisible by 4, got {dim}")
    H, W = grid
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))
    y = ys[..., None] * omega
    x = xs[..., None] * omega
    return torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=-1)


def resample_pos_embed(pos: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Bicubic resampling of a grid embedding ``[1, H, W, C]`` to ``[1, H', W', C]`` for ``grid=(H', W')``."""
    if tuple(pos.shape[1:3]) == tuple(grid):
        return pos
    out = F.interpolate(pos.permute(0, 3, 1, 2).float(), size=grid, mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).to(pos.dtype)
