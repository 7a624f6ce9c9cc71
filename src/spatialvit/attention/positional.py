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

import torch
import torch.nn.functional as F
from torch import nn

from .kernels import reference_attention, sdpa_attention
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
class PositionalAttention(SoftmaxAttention):
    """Attention weights from positions only (:class:`PositionalMap`); values from content."""

    supported_backends = ("reference",)

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        num_prefix_tokens: int = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: str = "auto",
        pos_type: str = "learned",
        pos_grid: int | tuple[int, int] = 8,
    ) -> None:
        super().__init__(dim, num_heads, num_prefix_tokens, qkv_bias, attn_drop, proj_drop, backend)
        self.qkv = nn.Linear(dim, dim, bias=qkv_bias)  # values only
        self.positional = PositionalMap(dim, num_heads, num_prefix_tokens, pos_type, pos_grid, qkv_bias)

    def project(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = self.split_heads(self.qkv(x))
        return v, v, v  # q and k are unused: the weights come from positions

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        x: torch.Tensor,
        grid: tuple[int, int],
        return_attn: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn = self.positional(grid, v)
        weights = F.dropout(attn, self.attn_drop) if self.training and self.attn_drop > 0 else attn
        return weights @ v, (attn.expand(v.shape[0], -1, -1, -1) if return_attn else None)


@register_attention("gpsa")
class GatedPositionalAttention(SoftmaxAttention):
    """GPSA: per-head learnable gate ``lambda_h`` (init ``gating_init``) between content and positional attention."""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        num_prefix_tokens: int = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: str = "auto",
        pos_type: str = "learned",
        pos_grid: int | tuple[int, int] = 8,
        gating_init: float = 1.0,
    ) -> None:
        super().__init__(dim, num_heads, num_prefix_tokens, qkv_bias, attn_drop, proj_drop, backend)
        self.positional = PositionalMap(dim, num_heads, num_prefix_tokens, pos_type, pos_grid, qkv_bias)
        self.gating = nn.Parameter(torch.full((num_heads,), float(gating_init)))

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        x: torch.Tensor,
        grid: tuple[int, int],
        return_attn: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        gate = torch.sigmoid(self.gating).to(v.dtype)[:, None, None]  # [heads, 1, 1]
        pos = self.positional(grid, v)
        dropout_p = self.attn_drop if self.training else 0.0
        if return_attn or self.choose_backend(q, None, dropout_p) == "reference":
            _, content = reference_attention(q, k, v, None, self.scale)
            attn = (1 - gate) * content + gate * pos
            weights = F.dropout(attn, dropout_p) if dropout_p > 0 else attn
            return weights @ v, (attn if return_attn else None)
        pos = F.dropout(pos, dropout_p) if dropout_p > 0 else pos
        return (1 - gate) * sdpa_attention(q, k, v, None, self.scale, dropout_p) + gate * (pos @ v), None
