"""The one interface every token mixer implements, and the bookkeeping they share.

A token mixer maps tokens ``x[B, N, C]`` to ``[B, N, C]``. The first ``num_prefix_tokens`` tokens (class token,
registers) carry no position; the remaining ``H*W`` tokens lie on the patch grid ``grid=(H, W)`` in row-major
order. A mixer may return its attention weights ``[B, heads, N, N]`` for analysis (``return_attn=True``), which is
allowed to take a slower, materialised path. Constructors take ``dim`` and then keyword arguments only.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn


def merge_heads(t: torch.Tensor) -> torch.Tensor:
    """``[B, heads, N, head_dim]`` -> ``[B, N, heads * head_dim]``."""
    B, _, N, _ = t.shape
    return t.transpose(1, 2).reshape(B, N, -1)


class TokenMixer(nn.Module):
    """Base class of all attention variants: the options every variant takes (once, here), head geometry, the
    token check and the head split.

    ``num_heads``; ``num_prefix_tokens``; ``qkv_bias``: bias of the q/k/v projection; ``attn_drop``: dropout on the
    attention weights; ``proj_drop``: dropout after the output projection; ``backend``: ``'auto'`` or a kernel
    (validated by the variant against what it can compute, :mod:`.backend`).
    """

    def __init__(
        self,
        dim: int,
        *,
        num_heads: int = 8,
        num_prefix_tokens: int = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.num_prefix_tokens = num_prefix_tokens
        self.qkv_bias = qkv_bias
        self.attn_drop = attn_drop
        self.proj_drop_rate = proj_drop
        self.backend = backend

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

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        """``[B, N, C]`` -> ``[B, heads, N, head_dim]``."""
        B, N, _ = t.shape
        return t.view(B, N, self.num_heads, -1).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, grid: tuple[int, int], return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x[B, N, C]`` -> ``[B, N, C]`` (and attention ``[B, heads, N, N]`` if ``return_attn``)."""
        raise NotImplementedError


def part_options(part: type, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a preset's keyword ``options`` into those of its ``part`` (the keyword-only parameters of
    ``part.__init__`` and of its base classes' ``__init__``) and the rest (the mixer's own options)."""
    names = {
        p.name
        for cls in part.__mro__
        if "__init__" in vars(cls)
        for p in inspect.signature(vars(cls)["__init__"]).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    }
    return {k: v for k, v in options.items() if k in names}, {k: v for k, v in options.items() if k not in names}
