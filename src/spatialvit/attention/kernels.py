"""Attention kernels shared by all token mixers: the naive reference and the SDPA fast path.

Shapes: ``q, k [B, h, N, d_qk]``, ``v [B, h, N, d_v]``, optional additive ``bias`` broadcastable to
``[B, h, N, N]``. Both return ``[B, h, N, d_v]``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Materialised ``softmax(q k^T * scale + bias) v``; also returns the weights ``[B, h, N, N]``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q @ k.transpose(-2, -1)) * scale
    if bias is not None:
        logits = logits + bias
    attn = logits.softmax(dim=-1)
    weights = F.dropout(attn, p=dropout_p) if dropout_p > 0 else attn
    return weights @ v, attn


def sdpa_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` with the bias passed as an additive ``attn_mask``."""
    if bias is not None:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)
