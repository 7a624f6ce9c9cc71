"""Convolutional Q/K/V projection (Xu 2025): q, k, v from a k x k convolution over the token grid.

Grid tokens ``[B, H*W, C]`` are reshaped to ``[B, C, H, W]`` and projected by a full ``k x k`` convolution
(``'full'``) or a depthwise ``k x k`` + pointwise ``1 x 1`` pair (``'separable'``, as CvT), stride 1, same padding;
prefix tokens use a linear projection. Attention itself is plain softmax attention.
"""

from __future__ import annotations

import torch
from torch import nn

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


@register_attention("conv_qkv")
class ConvQKVAttention(SoftmaxAttention):
    """MHSA whose grid-token q/k/v come from ``conv_mode`` (``'full'`` | ``'separable'``) ``kernel_size`` convs."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        num_prefix_tokens: int = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: str = "auto",
        kernel_size: int = 3,
        conv_mode: str = "full",
    ) -> None:
        super().__init__(dim, num_heads, num_prefix_tokens, qkv_bias, attn_drop, proj_drop, backend)
        self.qkv_conv = conv_projection(dim, 3 * dim, kernel_size, conv_mode, qkv_bias)
        if num_prefix_tokens == 0:
            self.qkv = None  # no prefix tokens: the linear path is unused

    def project(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        P = self.num_prefix_tokens
        fmap = x[:, P:].transpose(1, 2).unflatten(2, grid)  # [B, C, H, W]
        tokens = self.qkv_conv(fmap).flatten(2).transpose(1, 2)  # [B, H*W, 3C]
        if P:
            tokens = torch.cat([self.qkv(x[:, :P]), tokens], dim=1)
        return tuple(self.split_heads(t) for t in tokens.chunk(3, dim=-1))
