"""Attention kernels shared by all token mixers, and the switch that picks one.

Shapes: ``q, k [B, h, N, d]``, ``v [B, h, N, d_v]``. Every kernel returns ``[B, h, N, d_v]``.

- ``reference``: materialised ``softmax(q k^T * scale + bias) v`` (for tests and attention maps).
- ``sdpa``: ``F.scaled_dot_product_attention`` with the bias as an additive ``attn_mask`` (N x N tensor).
- ``flex``: FlexAttention with a ``score_mod`` that computes the bias on the fly (no N x N tensor); compiled once
  per process. Forward only on CPU in torch 2.13, float32/bf16/fp16 only.
- ``factorised``: a bias that is an exact low-rank form ``bias = q_extra @ k_extra^T`` rides on extra q/k columns
  through plain SDPA (no N x N tensor, backward everywhere).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

BACKENDS = ("auto", "reference", "sdpa", "flex", "factorised")
ScoreMod = Callable[..., torch.Tensor]


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


_FLEX: Callable[..., torch.Tensor] | None = None


def flex_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, score_mod: ScoreMod, scale: float | None = None
) -> torch.Tensor:
    """Compiled ``flex_attention(q, k, v, score_mod)``; the compiled function is built once and cached."""
    global _FLEX
    if _FLEX is None:
        from torch.nn.attention.flex_attention import flex_attention as flex

        _FLEX = torch.compile(flex, dynamic=False)
    return _FLEX(q, k, v, score_mod=score_mod, scale=scale)


def flex_problem(q: torch.Tensor, needs_grad: bool, dropout_p: float) -> str | None:
    """Why the flex path cannot serve this call (``None`` when it can)."""
    if dropout_p > 0:
        return "FlexAttention has no attention dropout"
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"FlexAttention does not support {q.dtype}"
    if needs_grad and q.device.type == "cpu":
        return "FlexAttention does not support backward on CPU (torch 2.13)"
    return None


_WARNED: set[str] = set()


def warn_once(message: str) -> None:
    """``warnings.warn`` each distinct fallback message once per process."""
    if message not in _WARNED:
        _WARNED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def check_backend(backend: str, supported: tuple[str, ...], owner: str) -> str:
    """Validate a ``backend`` constructor argument against what a mixer ``supported``."""
    if backend != "auto" and backend not in supported:
        raise ValueError(f"backend for {owner} must be 'auto' or one of {supported}, got {backend!r}")
    return backend
