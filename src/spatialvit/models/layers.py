"""Building blocks of the ViT: patch embedding, MLP, stochastic depth, layer scale, positional embeddings."""

from __future__ import annotations

import torch
from torch import nn

from ..attention.posenc import resample_pos_embed, sincos_pos_embed_2d  # noqa: F401  (re-exported here)


class PatchEmbed(nn.Module):
    """Non-overlapping ``p x p`` patches -> tokens: ``[B, C_in, H, W]`` -> ``[B, H/p * W/p, dim]``."""

    def __init__(self, patch_size: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Returns tokens ``[B, N, dim]`` and their grid ``(H/p, W/p)``."""
        if x.ndim != 4 or x.shape[1] != self.proj.in_channels:
            raise ValueError(f"images must be [B, {self.proj.in_channels}, H, W], got {tuple(x.shape)}")
        H, W = x.shape[-2:]
        p = self.patch_size
        if H % p or W % p:
            raise ValueError(f"image size {H}x{W} is not divisible by patch_size={p}")
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (H // p, W // p)


class Mlp(nn.Module):
    """``Linear -> GELU -> Dropout -> Linear -> Dropout`` on ``[..., dim]``."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: zero a residual branch per sample with probability ``p`` (scaled in training)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class LayerScale(nn.Module):
    """Per-channel learnable scale ``gamma * x`` (CaiT), initialised to ``init``."""

    def __init__(self, dim: int, init: float) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def trunc_normal_init(module: nn.Module) -> None:
    """timm-style init: truncated normal (std 0.02) for linear weights, zeros for biases."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
