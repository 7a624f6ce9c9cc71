"""Plain multi-head self-attention (ViT), and the machinery every variant shares.

:class:`SoftmaxAttention` owns the head split/merge, output projection, dropout and the backend switch. A variant
subclasses it and overrides :meth:`project` (how q/k/v are computed) and/or :meth:`spatial_bias` (the additive
bias it contributes), or :meth:`attend` when its attention is not ``softmax(q k^T * scale + bias) v``.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import TokenMixer
from .kernels import (
    check_backend,
    factorised_attention,
    flex_attention,
    flex_problem,
    reference_attention,
    sdpa_attention,
    warn_once,
)
from .manhattan import ManhattanBias
from .registry import register_attention

_FLEX_FAILED: list[str] = []  # the first compile/run error of the flex path in this process, if any


# On CPU, up to this many tokens a dense N x N bias through SDPA is the fastest exact path for every decay form
# (benchmarks/model_backends.py, benchmarks/attention.py); beyond it the paths without an N x N tensor keep memory
# linear in N.
CPU_DENSE_BIAS_MAX_TOKENS = 256


@register_attention("softmax")
class SoftmaxAttention(TokenMixer):
    """Standard MHSA with linear Q/K/V.

    ``backend``: ``'auto'`` (fastest correct path for the device and whether gradients are needed), or one of
    :attr:`supported_backends`. Attention maps (``return_attn=True``) always take the materialised reference path.
    """

    supported_backends: tuple[str, ...] = ("sdpa", "reference")

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        num_prefix_tokens: int = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: str = "auto",
    ) -> None:
        super().__init__(dim, num_heads, num_prefix_tokens)
        self.backend = check_backend(backend, self.supported_backends, type(self).__name__)
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

    def project(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens ``[B, N, C]`` -> ``q, k, v [B, heads, N, head_dim]``."""
        return tuple(self.split_heads(t) for t in self.qkv(x).chunk(3, dim=-1))

    def spatial_bias(self, x: torch.Tensor, grid: tuple[int, int]) -> ManhattanBias | None:
        """The additive logit bias this mixer contributes (``None``: plain attention)."""
        return None

    def choose_backend(self, q: torch.Tensor, bias: ManhattanBias | None, dropout_p: float) -> str:
        """Resolve ``self.backend`` for this call; a requested path that cannot run falls back with a warning."""
        needs_grad = torch.is_grad_enabled() and (q.requires_grad or (bias is not None and bias.rates.requires_grad))
        flex_issue = flex_problem(q, needs_grad, dropout_p) or (_FLEX_FAILED[0] if _FLEX_FAILED else None)
        if self.backend == "auto":
            if bias is None or (q.device.type == "cpu" and q.shape[-2] <= CPU_DENSE_BIAS_MAX_TOKENS):
                return "sdpa"
            if bias.factorisable and "factorised" in self.supported_backends:
                return "factorised"
            return "flex" if "flex" in self.supported_backends and flex_issue is None else "sdpa"
        if self.backend == "flex" and flex_issue is not None:
            warn_once(f"{type(self).__name__}: backend 'flex' unavailable ({flex_issue}); using 'sdpa' instead")
            return "sdpa"
        return self.backend

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        x: torch.Tensor,
        grid: tuple[int, int],
        return_attn: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``softmax(q k^T * scale + bias) v`` ``[B, heads, N, head_dim]`` on the chosen backend (+ weights)."""
        bias = self.spatial_bias(x, grid)
        dropout_p = self.attn_drop if self.training else 0.0
        backend = "reference" if return_attn else self.choose_backend(q, bias, dropout_p)
        if backend == "flex":
            try:
                return flex_attention(q, k, v, bias.score_mod(q.shape[0]), scale=self.scale), None
            except Exception as err:  # compile failures vary by platform; never fail silently, never crash
                _FLEX_FAILED.append(f"{type(err).__name__}: {str(err).splitlines()[0][:200]}")
                warn_once(f"{type(self).__name__}: flex attention failed ({_FLEX_FAILED[0]}); using 'sdpa' instead")
                backend = "sdpa"
        if backend == "factorised":
            q_extra, k_extra = bias.columns()
            return factorised_attention(q, k, v, q_extra, k_extra, self.scale, dropout_p), None
        dense = None if bias is None else bias.dense()
        if backend == "reference":
            return reference_attention(q, k, v, dense, self.scale, dropout_p)
        return sdpa_attention(q, k, v, dense, self.scale, dropout_p), None

    def forward(
        self, x: torch.Tensor, grid: tuple[int, int], return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self.check_tokens(x, grid)
        q, k, v = self.project(x, grid)
        out, attn = self.attend(q, k, v, x, grid, return_attn)
        out = self.merge_heads(out)
        return (out, attn) if return_attn else out
