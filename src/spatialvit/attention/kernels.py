"""Attention kernels: pure functions, no choices (:mod:`.backend` picks one and runs it).

Shapes: ``q, k [B, h, N, d]``, ``v [B, h, N, d_v]``. Every kernel returns ``[B, h, N, d_v]``.

- ``reference``: materialised ``softmax(q k^T * scale + bias) v`` (for tests and attention maps).
- ``sdpa``: ``F.scaled_dot_product_attention`` with the bias as an additive ``attn_mask`` (N x N tensor).
- ``flex``: FlexAttention with a ``score_mod`` that computes the bias on the fly (no N x N tensor). Forward only on
  CPU in torch 2.13, float32/bf16/fp16 only.
- ``factorised``: a bias that is an exact low-rank form ``bias = q_extra @ k_extra^T`` rides on extra q/k columns
  through plain SDPA (no N x N tensor, backward everywhere).
- ``decomposed_sdpa`` / ``decomposed_reference``: RMT's row-then-column form (see :mod:`.manhattan`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .manhattan import ManhattanBias

ScoreMod = Callable[..., torch.Tensor]


def reference_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0
) -> tuple[Tensor, Tensor]:
    """Materialised ``softmax(q k^T * scale + bias) v``; also returns the weights ``[B, h, N, N]``."""
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    logits = (q @ k.transpose(-2, -1)) * scale
    if bias is not None:
        logits = logits + bias
    attn = logits.softmax(dim=-1)
    weights = F.dropout(attn, p=dropout_p) if dropout_p > 0 else attn
    return weights @ v, attn


def sdpa_attention(
    q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None, scale: float | None = None, dropout_p: float = 0.0
) -> Tensor:
    """``F.scaled_dot_product_attention`` with the bias passed as an additive ``attn_mask``."""
    if bias is not None:
        bias = bias.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=scale)


def factorised_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    q_extra: torch.Tensor,
    k_extra: torch.Tensor,
    scale: float | None = None,
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """``softmax(q k^T * scale + q_extra k_extra^T) v`` through plain SDPA, without an N x N tensor.

    ``q_extra, k_extra [b, h, N, E]`` (b broadcast to B) are appended to q and k; q's part is divided by ``scale``
    so SDPA's scaling leaves ``q_extra k_extra^T`` intact. q, k and v are zero-padded to one common width, a
    multiple of 8, so the fused (flash) kernel runs instead of the math fallback, which needs equal head dims.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    B, h, N, d_v = v.shape
    width = q.shape[-1] + q_extra.shape[-1]
    pad = -max(width, d_v) % 8
    q = torch.cat([q, q_extra.expand(B, h, N, -1) / scale], dim=-1)
    k = torch.cat([k, k_extra.expand(B, h, N, -1)], dim=-1)
    full = max(width, d_v) + pad
    q, k = F.pad(q, (0, full - width)), F.pad(k, (0, full - width))
    out = F.scaled_dot_product_attention(q, k, F.pad(v, (0, full - d_v)), dropout_p=dropout_p, scale=scale)
    return out[..., :d_v]


def compile_flex() -> Callable[..., torch.Tensor]:
    """``torch.compile`` of FlexAttention (the caller keeps it: compiling is slow, calling it is not)."""
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def decomposed_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: ManhattanBias, scale: float, dropout_p: float = 0.0
) -> torch.Tensor:
    """Rows then columns as batched SDPA calls with ``W x W`` and ``H x H`` biases (no N x N tensor).

    Row pass: each row's grid queries attend to that row (1D decay) and to the prefix keys (no decay); column pass:
    each column's queries attend to that column of the row pass's output; prefix queries attend to all tokens.
    """
    (B, h, _, d), P, (H, W) = q.shape, bias.num_prefix, bias.grid
    row_bias, col_bias = (t.to(q.dtype) for t in bias.line_biases())  # [b, h, H, W, W], [b, h, W, H, H]
    qg, kg, vg = (t[:, :, P:].unflatten(2, (H, W)) for t in (q, k, v))  # [B, h, H, W, d]
    row_bias = F.pad(row_bias, (P, 0)).flatten(1, 2)  # prefix keys: no decay; b (1 or B) broadcasts
    k_row = torch.cat([k[:, :, None, :P].expand(B, h, H, P, d), kg], 3).reshape(B, h * H, P + W, d)
    v_row = torch.cat([v[:, :, None, :P].expand(B, h, H, P, d), vg], 3).reshape(B, h * H, P + W, d)
    rows = sdpa_attention(qg.reshape(B, h * H, W, d), k_row, v_row, row_bias, scale, dropout_p)
    cols = sdpa_attention(
        *(t.transpose(2, 3).reshape(B, h * W, H, d) for t in (qg, kg, rows.view(B, h, H, W, d))),
        col_bias.flatten(1, 2),
        scale,
        dropout_p,
    )
    grid_out = cols.view(B, h, W, H, d).transpose(2, 3).reshape(B, h, H * W, d)
    if P == 0:
        return grid_out
    prefix_out = sdpa_attention(q[:, :, :P], k, v, None, scale, dropout_p)
    return torch.cat([prefix_out, grid_out], 2)


def decomposed_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: ManhattanBias, scale: float, dropout_p: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both passes as masked dense ``[N, N]`` attentions; returns the output and the composite map ``A_col A_row``."""
    row, col = bias.decomposed_dense()
    _, a_row = reference_attention(q, k, v, row, scale)
    _, a_col = reference_attention(q, k, v, col, scale)
    if dropout_p > 0:
        a_row, a_col = F.dropout(a_row, dropout_p), F.dropout(a_col, dropout_p)
    attn = a_col @ a_row
    return attn @ v, attn
