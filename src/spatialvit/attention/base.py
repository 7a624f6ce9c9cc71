"""The one interface every token mixer implements.

A token mixer maps tokens ``x[B, N, C]`` to ``[B, N, C]``. The first ``num_prefix_tokens`` tokens (class token,
registers) carry no position; the remaining ``H*W`` tokens lie on the patch grid ``grid=(H, W)`` in row-major
order. A mixer may return its attention weights ``[B, heads, N, N]`` for analysis (``return_attn=True``), which is
allowed to take a slower, materialised path.
"""

from __future__ import annotations

import torch
from torch import nn


class TokenMixer(nn.Module):
    """Base class of all attention variants.

    Subclasses implement :meth:`forward` with the signature below. Constructor arguments shared by every variant:
    ``dim`` (C), ``num_heads``, ``num_prefix_tokens``, ``qkv_bias``, ``attn_drop``, ``proj_drop``; variant-specific
    options come as further keyword arguments.
    """

    def __init__(self, dim: int, num_heads: int = 8, num_prefix_tokens: int = 0) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.num_prefix_tokens = num_prefix_tokens

    def check_tokens(self, x: torch.Tensor, grid: tuple[int, int]) -> None:
        """Raise a clear error when ``x`` does not hold ``num_prefix_tokens + H*W`` tokens of width ``dim``."""
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"x must be [B, N, {self.dim}], got {tuple(x.shape)}")
        expected = self.num_prefix_tokens + grid[0] * grid[1]
        if x.shape[1] != expected:
            raise ValueError(
                f"x has {x.shape[1]} tokens but grid={tuple(grid)} with {self.num_prefix_tokens} prefix "
                f"token(s) needs {expected}"
            )

    def forward(
        self, x: torch.Tensor, grid: tuple[int, int], return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x[B, N, C]`` -> ``[B, N, C]`` (and attention ``[B, heads, N, N]`` if ``return_attn``)."""
        raise NotImplementedError
