"""Context-aware spatial decay (SDT's Context-Aware Gating): the decay rate of every token comes from its content.

Gate ``g = sigmoid(x W_g + b_g)`` ``[B, heads, H*W]`` per token and head; rate ``rho = alpha * (-log g)``. The bias is
the shared Manhattan decay (:mod:`.manhattan`): ``'pairwise'`` ``-(rho_i + rho_j)/2 * D_ij`` (default, SDT's
``-|(G_i + G_j)/2 * D_ij * alpha|`` with ``G = log g``) or ``'warped'`` (cumulative rates along rows/columns);
``decomposed=True`` applies the pairwise rates along rows, then along columns (SDT-H's high-resolution stages; one
gate for both passes). ``W_g = 0`` and ``b_g = logit(gamma_h^(1/alpha))`` at init, so a fresh layer equals fixed
decay (RMT) exactly.
"""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .base import part_options
from .manhattan import DecaySource, ManhattanBias
from .registry import register_attention
from .softmax import SoftmaxAttention


class ContextDecay(DecaySource):
    """The bias source of SDT: per-token, per-head rates ``rho = -alpha * log sigmoid(x W_g + b_g)``;
    ``schedule``: ``gamma_a``, ``gamma_b``, ``form``, ``decomposed``, as :class:`~.manhattan.DecaySource`."""

    def __init__(self, dim: int, num_heads: int, *, alpha: float = 1.0, **schedule: Any) -> None:
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        form = schedule.get("form", "pairwise")
        what = "the 'warped' context decay" if form == "warped" else "context decay"
        super().__init__(num_heads, what="decomposed context decay" if schedule.get("decomposed") else what, **schedule)
        self.alpha = alpha
        self.gate_weight = nn.Parameter(torch.zeros(num_heads, dim))
        self.gate_bias = nn.Parameter(torch.logit(self.initial_gammas() ** (1 / alpha)).float())

    def rates(self, x: torch.Tensor, num_prefix: int) -> torch.Tensor:
        """Per-token, per-head rates ``[B, heads, H*W]`` from the grid tokens of ``x[B, N, C]``."""
        # the gate over every token, then the grid tokens' rows: slicing x first would copy it (not contiguous)
        logits = F.linear(x, self.gate_weight.to(x.dtype), self.gate_bias.to(x.dtype))[:, num_prefix:]
        return -self.alpha * F.logsigmoid(logits).transpose(1, 2)

    def forward(self, x: torch.Tensor, grid: tuple[int, int], num_prefix: int) -> ManhattanBias:
        return ManhattanBias(grid, self.rates(x, num_prefix), num_prefix, form=self.form, decomposed=self.decomposed)


@register_attention("cag")
class ContextDecayAttention(SoftmaxAttention):
    """SDT decay attention: :class:`SoftmaxAttention` with a :class:`ContextDecay` bias; ``options``: those of
    :class:`ContextDecay` (``form``, ``alpha``, ``decomposed``, ``gamma_a``, ``gamma_b``) and of the mixer."""

    legacy_keys: ClassVar[dict[str, str | None]] = {
        "gate_weight": "bias.gate_weight",
        "gate_bias": "bias.gate_bias",
        "log_rate": None,
        "decay.": "bias.",
    }

    def __init__(self, dim: int, **options: Any) -> None:
        decay, options = part_options(ContextDecay, options)
        super().__init__(dim, bias=partial(ContextDecay, **decay), **options)
