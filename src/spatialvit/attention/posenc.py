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


def rope_2d(t: torch.Tensor, grid: tuple[int, int], num_prefix: int, base: float = 10000.0) -> torch.Tensor:
    """Axial 2D rotary embedding of grid tokens in ``t[B, h, N, d]`` (prefix tokens unchanged; ``d % 4 == 0``): half
    the channels rotate by the token's row, the other half by its column."""
    d = t.shape[-1]
    H, W = grid
    idx = torch.arange(H * W, device=t.device)
    y, x = (idx // W).to(t.dtype), (idx % W).to(t.dtype)
    freqs = base ** -(torch.arange(d // 4, device=t.device, dtype=t.dtype) / (d // 4))
    angle = torch.cat([y[:, None] * freqs, x[:, None] * freqs], -1).repeat(1, 2)  # [H*W, d]
    g = t[..., num_prefix:, :]
    half = torch.cat([-g[..., d // 2 :], g[..., : d // 2]], -1)
    return torch.cat([t[..., :num_prefix, :], g * angle.cos() + half * angle.sin()], -2)
