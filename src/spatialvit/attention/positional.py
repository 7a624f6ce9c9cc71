"""Positional attention (Jelassi et al. 2022) and its gated mix with content attention (ConViT's GPSA).

Positional attention: ``A = softmax((P W_q)(P W_k)^T / sqrt(d))`` from positional encodings ``P`` only, values from
content (``V = X W_v``), output ``A V``. ``A [1, heads, N, N]`` is computed once per forward and broadcast over the
batch (no fused kernel applies: the map is shared, so ``A @ V`` is one batched matmul). ``P`` is a learned grid
``[1, gh, gw, C]`` (resampled bicubically to other grids, gradients flowing through) or fixed 2D sin-cos. Prefix
tokens get their own learned positional vectors, so their rows and columns of ``A`` are position-only too.

GPSA: ``((1 - sigmoid(lambda_h)) softmax(q k^T / sqrt(d)) + sigmoid(lambda_h) A) V`` with a learnable per-head
gate ``lambda_h`` (content part on the SDPA/reference backends, positional part as above).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .backend import check_backend, resolve_backend
from .base import TokenMixer, merge_heads
from .kernels import reference_attention, sdpa_attention
from .manhattan import ManhattanBias
from .posenc import resample_pos_embed, sincos_pos_embed_2d
from .registry import register_attention
from .softmax import SoftmaxAttention

POS_TYPES = ("learned", "sincos")


class PositionalMap(nn.Module):
    """``A [1, heads, N, N] = softmax((P W_q)(P W_k)^T * scale)`` from positional encodings alone.

    ``pos_type``: ``'learned'`` grid ``[1, gh, gw, C]`` (``pos_grid``; the ViT passes its patch grid) or
    ``'sincos'``; prefix tokens get learned vectors.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        num_prefix_tokens: int,
        pos_type: str,
        pos_grid: int | tuple[int, int],
        bias: bool,
    ) -> None:
        super().__init__()
        if pos_type not in POS_TYPES:
            raise ValueError(f"pos_type must be one of {POS_TYPES}, got {pos_type!r}")
        gh, gw = (pos_grid, pos_grid) if isinstance(pos_grid, int) else pos_grid
        self.dim, self.num_heads, self.scale = dim, num_heads, (dim // num_heads) ** -0.5
        self.pos = nn.Parameter(torch.randn(1, gh, gw, dim)) if pos_type == "learned" else None
        self.prefix_pos = nn.Parameter(torch.randn(1, num_prefix_tokens, dim)) if num_prefix_tokens else None
        self.qk = nn.Linear(dim, 2 * dim, bias=bias)

    def forward(self, grid: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """The map for ``grid`` in ``like``'s dtype/device."""
        if self.pos is not None:
            P = resample_pos_embed(self.pos, grid).flatten(1, 2)
        else:
            P = sincos_pos_embed_2d(grid, self.dim).flatten(0, 1)[None]
        if self.prefix_pos is not None:
            P = torch.cat([self.prefix_pos, P.to(self.prefix_pos)], 1)
        q, k = self.qk(P.to(like)).unflatten(-1, (2, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        return ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1)


@register_attention("positional")
class PositionalAttention(TokenMixer):
    """Attention weights from positions only (:class:`PositionalMap`: ``pos_type``, ``pos_grid``); values ``x W_v``
    from content; then the output projection. The map is materialised (``backend`` may only be ``'auto'`` or
    ``'reference'``); ``options``: those every mixer takes (:class:`TokenMixer`)."""

    def __init__(
        self, dim: int, *, pos_type: str = "learned", pos_grid: int | tuple[int, int] = 8, **options: Any
    ) -> None:
        super().__init__(dim, **options)
        self.backend = check_backend(self.backend, ("reference",), "positional attention")
        self.qkv = nn.Linear(dim, dim, bias=self.qkv_bias)  # values only: the weights come from positions
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(self.proj_drop_rate)
        self.positional = PositionalMap(dim, self.num_heads, self.num_prefix_tokens, pos_type, pos_grid, self.qkv_bias)

    def forward(
        self, x: torch.Tensor, grid: tuple[int, int], return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self.check_tokens(x, grid)
        v = self.split_heads(self.qkv(x))
        attn = self.positional(grid, v)  # [1, heads, N, N], shared by the batch
        weights = F.dropout(attn, self.attn_drop) if self.training and self.attn_drop > 0 else attn
        out = self.proj_drop(self.proj(merge_heads(weights @ v)))
        return (out, attn.expand(v.shape[0], -1, -1, -1)) if return_attn else out


@register_attention("gpsa")
class GatedPositionalAttention(SoftmaxAttention):
    """GPSA: per-head learnable gate ``lambda_h`` (init ``gating_init``) between content attention (the softmax
    attention it extends) and positional attention (:class:`PositionalMap`); ``options``: those of
    :class:`SoftmaxAttention`."""

    def __init__(
        self,
        dim: int,
        *,
        pos_type: str = "learned",
        pos_grid: int | tuple[int, int] = 8,
        gating_init: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(dim, **options)
        self.positional = PositionalMap(dim, self.num_heads, self.num_prefix_tokens, pos_type, pos_grid, self.qkv_bias)
        self.gating = nn.Parameter(torch.full((self.num_heads,), float(gating_init)))

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, bias: ManhattanBias | None, grid: tuple[int, int], return_attn: bool
    ) -> tuple[Tensor, Tensor | None]:
        gate = torch.sigmoid(self.gating).to(v.dtype)[:, None, None]  # [heads, 1, 1]
        pos = self.positional(grid, v)
        dropout_p = self.attn_drop if self.training else 0.0
        backend = resolve_backend(
            self.backend, self.supported_backends, q, None, dropout_p=dropout_p, return_attn=return_attn, owner="GPSA"
        )
        if backend == "reference":
            _, content = reference_attention(q, k, v, None, self.scale)
            attn = (1 - gate) * content + gate * pos
            weights = F.dropout(attn, dropout_p) if dropout_p > 0 else attn
            return weights @ v, (attn if return_attn else None)
        pos = F.dropout(pos, dropout_p) if dropout_p > 0 else pos
        return (1 - gate) * sdpa_attention(q, k, v, None, self.scale, dropout_p) + gate * (pos @ v), None
