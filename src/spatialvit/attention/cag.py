"""Context-aware spatial decay (SDT's Context-Aware Gating): the decay rate of every token comes from its content.

Gate ``g = sigmoid(x W_g + b_g)`` ``[B, heads, H*W]`` per token and head; rate ``rho = alpha * (-log g)``. The bias is
the shared Manhattan decay (:mod:`.manhattan`): ``'pairwise'`` ``-(rho_i + rho_j)/2 * D_ij`` (default, SDT's
``-|(G_i + G_j)/2 * D_ij * alpha|`` with ``G = log g``) or ``'warped'`` (cumulative rates along rows/columns).
``W_g = 0`` and ``b_g = logit(gamma_h^(1/alpha))`` at init, so a fresh layer equals fixed decay (RMT) exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .decay import ManhattanDecayAttention, gamma_schedule
from .manhattan import FORMS, ManhattanBias
from .registry import register_attention


@register_attention("cag")
class ContextDecayAttention(ManhattanDecayAttention):
    """SDT decay attention. ``form``: ``'pairwise'`` | ``'warped'``; ``alpha``: rate scale; ``rope``, ``lepe_kernel``:
    RMT's block extras (see :mod:`.decay`). (The inherited fixed
    ``log_rate`` is only the schedule the gate starts from; the decomposed form is offered by ``'decay'`` alone.)"""

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        num_prefix_tokens: int = 0,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        backend: str = "auto",
        gamma_a: float = 2.0,
        gamma_b: float = 4.0,
        form: str = "pairwise",
        alpha: float = 1.0,
        rope: bool = False,
        lepe_kernel: int = 0,
    ) -> None:
        super().__init__(
            dim,
            num_heads,
            num_prefix_tokens,
            qkv_bias,
            attn_drop,
            proj_drop,
            backend,
            gamma_a,
            gamma_b,
            rope=rope,
            lepe_kernel=lepe_kernel,
        )
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if form == "warped" and backend == "factorised":
            raise ValueError("the 'warped' form has no exact factorisation: use backend 'flex', 'sdpa' or 'reference'")
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.form = form
        self.alpha = alpha
        self.gate_weight = nn.Parameter(torch.zeros(num_heads, dim))
        self.gate_bias = nn.Parameter(torch.logit(gamma_schedule(num_heads, gamma_a, gamma_b) ** (1 / alpha)).float())

    def rates(self, x: torch.Tensor) -> torch.Tensor:
        """Per-token, per-head rates ``rho = -alpha * log g`` ``[B, heads, H*W]`` from grid tokens ``x[B, N, C]``."""
        logits = F.linear(x[:, self.num_prefix_tokens :], self.gate_weight.to(x.dtype), self.gate_bias.to(x.dtype))
        return -self.alpha * F.logsigmoid(logits).transpose(1, 2)

    def spatial_bias(self, x: torch.Tensor, grid: tuple[int, int]) -> ManhattanBias:
        return ManhattanBias(grid, self.rates(x), self.num_prefix_tokens, form=self.form)
