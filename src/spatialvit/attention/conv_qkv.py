"""Convolutional Q/K/V projection (Xu 2025): q, k, v from a k x k convolution over the token grid.

Grid tokens ``[B, H*W, C]`` are reshaped to ``[B, C, H, W]`` and projected by a full ``k x k`` convolution
(``'full'``) or a depthwise ``k x k`` + pointwise ``1 x 1`` pair (``'separable'``, as CvT), stride 1, same padding;
prefix tokens use a linear projection. Attention itself is plain softmax attention.
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

import torch
from torch import nn

from .base import part_options
from .registry import register_attention
from .softmax import SoftmaxAttention

CONV_MODES = ("full", "separable")


def conv_projection(dim: int, out: int, kernel_size: int, mode: str, bias: bool) -> nn.Module:
    """``[B, dim, H, W]`` -> ``[B, out, H, W]`` by a same-padded ``kernel_size`` convolution of the given mode."""
    if mode not in CONV_MODES:
        raise ValueError(f"conv mode must be one of {CONV_MODES}, got {mode!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    pad = kernel_size // 2
    if mode == "full":
        return nn.Conv2d(dim, out, kernel_size, padding=pad, bias=bias)
    return nn.Sequential(
        nn.Conv2d(dim, dim, kernel_size, padding=pad, groups=dim, bias=False), nn.Conv2d(dim, out, 1, bias=bias)
    )


class ConvQKV(nn.Module):
    """The convolutional projection part: grid tokens ``[B, H*W, C]`` -> q, k, v stacked ``[B, H*W, 3C]`` by a
    convolution over the grid (prefix tokens keep the attention's linear projection)."""

    def __init__(self, dim: int, *, bias: bool = True, kernel_size: int = 3, conv_mode: str = "full") -> None:
        super().__init__()
        self.conv = conv_projection(dim, 3 * dim, kernel_size, conv_mode, bias)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        fmap = tokens.transpose(1, 2).unflatten(2, grid)  # [B, C, H, W]
        return self.conv(fmap).flatten(2).transpose(1, 2)


@register_attention("conv_qkv")
class ConvQKVAttention(SoftmaxAttention):
    """Softmax attention with the :class:`ConvQKV` projection; ``options``: those of :class:`ConvQKV`
    (``kernel_size``, ``conv_mode`` ``'full'`` | ``'separable'``) and of the mixer."""

    legacy_keys: ClassVar[dict[str, str | None]] = {"qkv_conv.": "grid_qkv.conv."}

    def __init__(self, dim: int, **options: Any) -> None:
        conv, options = part_options(ConvQKV, options)
        super().__init__(dim, grid_qkv=partial(ConvQKV, **conv), **options)
