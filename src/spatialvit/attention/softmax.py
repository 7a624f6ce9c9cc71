"""Plain multi-head self-attention (ViT): linear Q/K/V, ``F.scaled_dot_product_attention``."""

from __future__ import annotations

import torch
from torch import nn

from .base import TokenMixer
from .kernels import reference_attention, sdpa_attention
from .registry import register_attention


@register_attention("softmax")
class SoftmaxAttention(TokenMixer):
    """Standard MHSA. ``backend='sdpa'`` (fast) or ``'reference'`` (materialised softmax, for tests/analysis)."""

    backends = ("sdpa", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        num_prefix_tokens: int = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: str = "sdpa",
    ) -> None:
        super().__init__(dim, num_heads, num_prefix_tokens)
        if backend not in self.backends:
            raise ValueError(f"backend must be one of {self.backends}, got {backend!r}")
        self.backend = backend
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]`` -> ``[B, heads, N, head_dim]``."""
        B, N, _ = t.shape
        return t.view(B, N, self.num_heads, -1).transpose(1, 2)

    def merge_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, heads, N, head_dim]`` -> ``[B, N, C]``, then the output projection."""
        B, _, N, _ = t.shape
        return self.proj_drop(self.proj(t.transpose(1, 2).reshape(B, N, -1)))

    def forward(
        self, x: torch.Tensor, grid: tuple[int, int], return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self.check_tokens(x, grid)
        q, k, v = (self.split_heads(t) for t in self.qkv(x).chunk(3, dim=-1))
        dropout_p = self.attn_drop if self.training else 0.0
        if return_attn or self.backend == "reference":
            out, attn = reference_attention(q, k, v, scale=self.scale, dropout_p=dropout_p)
            out = self.merge_heads(out)
            return (out, attn) if return_attn else out
        return self.merge_heads(sdpa_attention(q, k, v, scale=self.scale, dropout_p=dropout_p))
