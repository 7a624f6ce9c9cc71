"""The one place that decides which kernel computes an attention call, and runs it.

:func:`check_backend` validates a mixer's ``backend`` option when it is built; :func:`resolve_backend` turns it
into a kernel for one call (``auto``: the fastest exact path for the device, grid size and whether gradients are
needed; a requested path that cannot serve the call falls back to ``sdpa`` with a warning);
:func:`biased_attention` runs the kernel, and remembers a failure of the compiled flex path so that it is not tried
again in this process.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F

from .bias import SpatialBias
from .kernels import (
    BLOCK_ELEMENTS,
    apply_shared_map,
    bmm_attention,
    compile_flex,
    decomposed_reference,
    decomposed_sdpa,
    factorised_attention,
    pairwise_decay_attention,
    pairwise_decay_bmm,
    reference_attention,
    sdpa_attention,
)

BACKENDS = ("auto", "reference", "sdpa", "bmm", "flex", "factorised", "chunked")
# The kernels of attention without a bias (and of GPSA's blend), and of attention whose weights are a given map.
PLAIN_BACKENDS = ("sdpa", "bmm", "reference")
MAP_BACKENDS = ("reference",)
# Kernels without attention dropout: a call with dropout runs on 'sdpa' instead (exact, with a warning).
NO_DROPOUT = ("flex", "chunked")
# On CPU: a fixed decay whose dense bias is kept (decay.KEEP_DENSE_MAX) runs it through SDPA's fused kernel; any other
# pairwise decay (content-dependent or trained rates, or a large grid) runs ``chunked``; up to this many grid tokens
# (prefix tokens not counted) the forms chunked cannot compute (warped, dropout) use a dense bias through SDPA, beyond
# it paths without an N x N tensor (docs/attention.md: benchmarks/model_backends.py, benchmarks/attention.py).
CPU_DENSE_BIAS_MAX_TOKENS = 256
# Inference on a small CPU grid: a content-dependent dense bias of at most this many entries (16 MiB in float32; B x h
# x N x N) through SDPA beats the chunked kernel's blocks at 2 threads (micro ViT, batch 64: 1.1 M); above it (tiny
# ViT at 64 x 64, batch 64: 12.7 M) the chunked blocks win (docs/attention.md).
CPU_DENSE_BIAS_MAX_ELEMENTS = 2**22
# On CPU with at most this many tokens (and at most CPU_DENSE_BIAS_MAX_ELEMENTS logits) the materialised ``bmm``
# path beats SDPA's fused kernel, whose per-block work dominates at small N: in inference, with or without a bias;
# in training, for pairwise rates that need a gradient (weights kept, backward by hand; the chunked kernel recomputes
# them). Measured on whole models at 65 tokens (micro ViT); at 145 tokens plain attention's gain depends on the head
# width, and keeping the weights costs B*h*N*N per layer (docs/attention.md: benchmarks/small_grid_kernels.py).
CPU_BMM_MAX_TOKENS = 128


class _FlexState:
    """The compiled flex kernel of this process, its first failure, and the fallback warnings already given."""

    def __init__(self) -> None:
        self.kernel: Callable[..., torch.Tensor] | None = None
        self.failure: str | None = None
        self.warned: set[str] = set()

    def warn_once(self, message: str) -> None:
        if message not in self.warned:
            self.warned.add(message)
            warnings.warn(message, RuntimeWarning, stacklevel=4)


_STATE = _FlexState()


def check_backend(backend: str, supported: tuple[str, ...], what: str) -> str:
    """Validate a ``backend`` option against the kernels that compute ``what`` exactly (named in the error)."""
    if backend != "auto" and backend not in supported:
        raise ValueError(f"backend {backend!r} cannot compute {what}: use 'auto' or one of {supported}")
    return backend


def flex_problem(q: torch.Tensor, needs_grad: bool, dropout_p: float) -> str | None:
    """Why the flex path cannot serve this call (``None`` when it can)."""
    if dropout_p > 0:
        return "FlexAttention has no attention dropout"
    if q.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        return f"FlexAttention does not support {q.dtype}"
    if needs_grad and q.device.type == "cpu":
        return "FlexAttention does not support backward on CPU (torch 2.13)"
    return _STATE.failure


def resolve_backend(
    requested: str,
    supported: tuple[str, ...],
    q: torch.Tensor,
    bias: SpatialBias | None,
    *,
    dropout_p: float = 0.0,
    return_attn: bool = False,
    owner: str = "attention",
) -> str:
    """The kernel for one call: ``requested`` (validated by :func:`check_backend`) or, for ``'auto'``, the rule
    measured in docs/attention.md. Attention maps always come from ``reference``."""
    if return_attn:
        return "reference"
    rates_grad = bias is not None and bias.requires_grad
    needs_grad = rates_grad or (torch.is_grad_enabled() and q.requires_grad)
    flex_issue = flex_problem(q, needs_grad, dropout_p)
    if requested == "auto":
        return _auto(
            supported, q, bias, needs_grad=needs_grad, rates_grad=rates_grad, dropout_p=dropout_p, flex_issue=flex_issue
        )
    if requested == "flex" and flex_issue is not None:
        _STATE.warn_once(f"{owner}: backend 'flex' unavailable ({flex_issue}); using 'sdpa' instead")
        return "sdpa"
    if requested in NO_DROPOUT and dropout_p > 0:
        _STATE.warn_once(f"{owner}: backend {requested!r} has no attention dropout; using 'sdpa' instead")
        return "sdpa"
    return requested


def _auto(
    supported: tuple[str, ...],
    q: torch.Tensor,
    bias: SpatialBias | None,
    *,
    needs_grad: bool,
    rates_grad: bool,
    dropout_p: float,
    flex_issue: str | None,
) -> str:
    """The ``auto`` rule (measured in docs/attention.md)."""
    cpu = q.device.type == "cpu"
    N = q.shape[2]
    logits = q.shape[0] * q.shape[1] * N * N
    bmm_size = N <= CPU_BMM_MAX_TOKENS and logits <= CPU_DENSE_BIAS_MAX_ELEMENTS
    if cpu and bmm_size and "bmm" in supported and not torch.compiler.is_compiling():  # in-place steps: eager only
        if not needs_grad and (bias is None or not bias.decomposed):  # inference: in place
            return "bmm"
        if rates_grad and bias.pairwise and dropout_p == 0:  # trained rates: weights kept, backward by hand
            return "bmm"
    if bias is None or bias.decomposed:
        return "sdpa"
    if cpu and bias.kept:  # a fixed decay's kept dense bias: nothing to build per call
        return "sdpa"
    small = bias.grid[0] * bias.grid[1] <= CPU_DENSE_BIAS_MAX_TOKENS  # a small grid (prefix tokens not counted)
    blocked = bias.pairwise and dropout_p == 0 and "chunked" in supported and not torch.compiler.is_compiling()
    # On a small grid SDPA takes the dense bias when the call fits one block of the chunked kernel (nothing to gain
    # from it but its Python loop) and, without gradients, while that bias is at most CPU_DENSE_BIAS_MAX_ELEMENTS.
    dense = logits <= BLOCK_ELEMENTS or (not rates_grad and logits <= CPU_DENSE_BIAS_MAX_ELEMENTS)
    if cpu and blocked and not (small and dense):
        return "chunked"
    if cpu and small:
        return "sdpa"
    if bias.pairwise and "factorised" in supported:
        return "factorised"
    return "flex" if "flex" in supported and flex_issue is None else "sdpa"


def biased_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: SpatialBias | None,
    *,
    backend: str,
    scale: float,
    dropout_p: float = 0.0,
    owner: str = "attention",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``softmax(q k^T * scale + bias) v`` ``[B, h, N, d_v]`` on ``backend`` (a resolved kernel name), and the
    weights ``[B, h, N, N]`` from ``reference`` (``None`` otherwise)."""
    if bias is not None and bias.decomposed:
        if backend == "reference":
            return decomposed_reference(q, k, v, bias, scale=scale, dropout_p=dropout_p)
        return decomposed_sdpa(q, k, v, bias, scale=scale, dropout_p=dropout_p), None
    if backend == "flex":
        try:
            _STATE.kernel = _STATE.kernel or compile_flex()
            return _STATE.kernel(q, k, v, score_mod=bias.score_mod(q.shape[0]), scale=scale), None
        except Exception as err:  # compile failures vary by platform; never fail silently, never crash
            _STATE.failure = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            _STATE.warn_once(f"{owner}: flex attention failed ({_STATE.failure}); using 'sdpa' instead")
            backend = "sdpa"
    if backend == "factorised":
        q_extra, k_extra = bias.columns()
        return factorised_attention(q, k, v, q_extra, k_extra, scale=scale, dropout_p=dropout_p), None
    if backend == "chunked":
        rates = bias.pairwise_rates()
        return pairwise_decay_attention(q, k, v, rates, bias.grid, num_prefix=bias.num_prefix, scale=scale), None
    if backend == "bmm" and bias is not None and bias.pairwise and not bias.kept and dropout_p == 0:
        rates = bias.pairwise_rates()  # formed block by block; under autograd, their gradient by hand
        return pairwise_decay_bmm(q, k, v, rates, bias.grid, num_prefix=bias.num_prefix, scale=scale), None
    dense = None if bias is None else bias.dense()
    if backend == "bmm":
        return bmm_attention(q, k, v, dense, scale=scale, dropout_p=dropout_p), None
    if backend == "reference":
        return reference_attention(q, k, v, dense, scale=scale, dropout_p=dropout_p)
    return sdpa_attention(q, k, v, dense, scale=scale, dropout_p=dropout_p), None


def blended_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    blend: tuple[torch.Tensor, torch.Tensor],
    *,
    backend: str,
    scale: float,
    dropout_p: float = 0.0,
    return_attn: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """GPSA's ``((1 - g) softmax(q k^T * scale) + g A) v`` on ``backend`` (one of :data:`PLAIN_BACKENDS`), with
    ``blend = (A [1, h, N, N], g [h, 1, 1])``: the map shared by the batch and the per-head gate; the blended
    weights ``[B, h, N, N]`` for ``return_attn``."""
    pos, gate = blend
    if backend == "bmm" and dropout_p == 0 and not torch.is_grad_enabled():  # blend each block in place
        return bmm_attention(q, k, v, None, scale=scale, mix=lambda w: w.lerp_(pos, gate)), None
    if backend in ("reference", "bmm"):  # materialised weights
        _, content = reference_attention(q, k, v, None, scale=scale)
        attn = torch.lerp(content, pos, gate)  # (1 - gate) content + gate pos
        weights = F.dropout(attn, dropout_p) if dropout_p > 0 else attn
        return weights @ v, (attn if return_attn else None)
    pos = F.dropout(pos, dropout_p) if dropout_p > 0 else pos
    # one fused blend instead of two scalings and a sum (measured ~10% of the layer on CPU)
    content = sdpa_attention(q, k, v, None, scale=scale, dropout_p=dropout_p)
    return torch.lerp(content, apply_shared_map(pos, v), gate), None


def mapped_attention(attn: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """``attn [1, h, N, N] @ v [B, h, N, d]`` for weights shared by the batch (positional attention), with attention
    dropout on the weights."""
    weights = F.dropout(attn, dropout_p) if dropout_p > 0 else attn
    return apply_shared_map(weights, v)
