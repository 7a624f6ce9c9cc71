"""The spatial-bias contract: what a bias source gives the attention, and which kernels can serve it.

A *bias source* is the ``bias`` part of :class:`~spatialvit.attention.softmax.SoftmaxAttention`: a module built as
``source(dim, num_heads)`` that maps ``(x[B, N, C], grid, num_prefix)`` to one call's :class:`SpatialBias`, and
declares the kernels that compute its bias exactly (``backends``, a subset of :data:`.backend.BACKENDS`) and itself
for errors (``what``). The kernels themselves are chosen by :mod:`.backend` alone, from what the bias can give:

- :meth:`SpatialBias.dense`: the additive logit bias ``[b, h, N, N]`` (``b`` is 1 or the batch) — every bias;
  served by ``reference``, ``sdpa`` and ``bmm``;
- :meth:`SpatialBias.score_mod`: a FlexAttention ``score_mod`` that computes it on the fly (``flex``);
- :meth:`SpatialBias.columns`: exact low-rank ``q_extra @ k_extra^T`` equal to it up to per-query constants
  (``factorised``);
- :meth:`SpatialBias.pairwise_rates`: rates ``r [b, h, N]`` with the bias ``-(r_i + r_j)/2 * D_ij`` (Manhattan
  distance ``D``; the ``chunked`` kernel and the blocked ``bmm`` path with a hand-written rate gradient);
- ``decomposed``: the bias is applied as RMT's row-then-column passes instead (:mod:`.manhattan`).

Prefix tokens get no bias (0 to and from them). A new bias (learned relative positions, ALiBi-2D, ...) implements
:meth:`~SpatialBias.dense` and whichever other forms it has, and lists the matching backends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor

ScoreMod = Callable[..., Tensor]


class SpatialBias:
    """One call's additive logit bias on ``grid`` after ``num_prefix`` prefix tokens, in the forms it has.

    Subclasses set ``grid`` and ``num_prefix`` and implement :meth:`dense`; the other forms default to "not
    available" (``None`` / ``False``).
    """

    grid: tuple[int, int]
    num_prefix: int
    decomposed: bool = False

    def dense(self) -> Tensor:
        """The bias ``[b, h, N, N]``, zero in the rows and columns of prefix tokens."""
        raise NotImplementedError

    @property
    def kept(self) -> bool:
        """Whether the source keeps the dense form (nothing to build per call)."""
        return False

    @property
    def requires_grad(self) -> bool:
        """Whether the bias's parameters need a gradient in this call."""
        return False

    @property
    def pairwise(self) -> bool:
        """Whether :meth:`pairwise_rates` and :meth:`columns` are available (the 2D pairwise Manhattan form)."""
        return False

    def score_mod(self, batch: int) -> ScoreMod | None:
        """FlexAttention ``score_mod(score, b, h, q_idx, kv_idx)`` adding the bias (``None``: not available)."""
        return None

    def columns(self) -> tuple[Tensor, Tensor] | None:
        """``q_extra, k_extra [b, h, N, E]``, their product the bias up to per-query constants (``None``: none)."""
        return None

    def pairwise_rates(self) -> Tensor | None:
        """Rates ``[b, h, N]`` (0 for prefix tokens) of the pairwise Manhattan form (``None``: not that form)."""
        return None


class DenseBias(SpatialBias):
    """A bias given by its dense form alone: ``bias [b, h, H*W, H*W]`` among the grid tokens, padded with zero rows
    and columns for the prefix tokens."""

    def __init__(self, bias: Tensor, grid: tuple[int, int], num_prefix: int = 0) -> None:
        n = grid[0] * grid[1]
        if bias.ndim != 4 or tuple(bias.shape[-2:]) != (n, n):
            raise ValueError(f"bias must be [b, heads, {n}, {n}] for grid={tuple(grid)}, got {tuple(bias.shape)}")
        self.grid, self.num_prefix, self.grid_bias = tuple(grid), num_prefix, bias

    def dense(self) -> Tensor:
        P = self.num_prefix
        return torch.nn.functional.pad(self.grid_bias, (P, 0, P, 0)) if P else self.grid_bias

    @property
    def requires_grad(self) -> bool:
        return torch.is_grad_enabled() and self.grid_bias.requires_grad


class BiasSource(Protocol):
    """The ``bias`` part of a mixer: ``(x[B, N, C], grid, num_prefix) -> SpatialBias``, with the kernels that
    compute its bias exactly (``backends``) and its name in errors (``what``)."""

    backends: tuple[str, ...]
    what: str

    def __call__(self, x: Tensor, grid: tuple[int, int], num_prefix: int) -> SpatialBias: ...
