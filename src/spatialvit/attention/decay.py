"""Fixed Manhattan spatial decay (RMT's MaSA): ``softmax(q k^T / sqrt(d) + log(gamma_h) * D_ij) v``.

Per-head ``gamma_h = 1 - 2^-(a + b*h/heads)``, fixed or learnable. ``decomposed=True`` gives RMT's high-resolution
form: attention along each row (with the 1D decay ``|x_i - x_j|``, prefix tokens as extra bias-free keys), then
along each column (``|y_i - y_j|``) over the row step's output. Prefix-token queries attend to all tokens plainly.
RMT's block extras are options of every mixer, off by default so the decay is measured by itself: ``rope=True``
rotates grid tokens' q/k by their row (half the channels) and column (other half); ``lepe_kernel=k`` adds a depthwise
``k x k`` conv of V over the grid to the output (RMT's LePE, k=5 there).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from typing import Any, ClassVar

import torch
from torch import nn

from .base import part_options
from .manhattan import DecaySource, ManhattanBias
from .registry import register_attention
from .softmax import SoftmaxAttention

# A fixed decay keeps its dense bias [1, heads, N, N] (per layer) while its rates need no gradient, up to this many
# entries (16 MiB in float32: 4 heads at N = 1024); beyond, no N x N tensor is kept.
KEEP_DENSE_MAX = 2**22


class FixedDecay(DecaySource):
    """The bias source of fixed decay: rate ``-log(gamma_h)`` per head, the same for every token.

    ``learnable_decay``: train ``log_rate = log(-log gamma)``; ``schedule``: ``gamma_a``, ``gamma_b`` (the
    schedule) and ``decomposed`` (the row-then-column form), as :class:`~.manhattan.DecaySource`.
    """

    def __init__(self, dim: int, num_heads: int, *, learnable_decay: bool = False, **schedule: Any) -> None:
        what = "decomposed decay" if schedule.get("decomposed") else "fixed decay"
        super().__init__(num_heads, form="pairwise", what=what, **schedule)
        log_rate = (-self.initial_gammas().log()).log().float()
        if learnable_decay:
            self.log_rate = nn.Parameter(log_rate)
        else:
            self.register_buffer("log_rate", log_rate)
        # The dense bias [1, heads, N, N] of the current rates, per (grid, prefix, dtype, device), kept while the
        # rates need no gradient; keyed on log_rate's storage and version counter (bumped by every in-place
        # change: an optimiser step, load_state_dict), so a changed rate is never served stale.
        self._dense_cache: dict[tuple, torch.Tensor] = {}

    @property
    def gammas(self) -> torch.Tensor:
        """Current per-head decay ``gamma_h`` ``[heads]``."""
        return torch.exp(-self.log_rate.exp())

    def forward(self, x: torch.Tensor, grid: tuple[int, int], num_prefix: int) -> ManhattanBias:
        rates = self.log_rate.exp().to(x.dtype)[None, :, None].expand(1, -1, grid[0] * grid[1])
        bias = ManhattanBias(grid, rates, num_prefix, constant=True, decomposed=self.decomposed)
        frozen = not (torch.is_grad_enabled() and self.log_rate.requires_grad)
        n = num_prefix + grid[0] * grid[1]
        keep = frozen and len(self.log_rate) * n * n <= KEEP_DENSE_MAX and not self.decomposed
        if keep and not torch.compiler.is_compiling():
            bias.precomputed = partial(self._cached_dense, bias, x.dtype, x.device)
        return bias

    def _cached_dense(self, bias: ManhattanBias, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The dense bias of the current rates, built at most once per grid, prefix, dtype, device and rate."""
        rate = self.log_rate
        key = (tuple(bias.grid), bias.num_prefix, dtype, device, rate.data_ptr(), rate._version)
        dense = self._dense_cache.get(key)
        if dense is None:
            if len(self._dense_cache) >= 4:
                self._dense_cache.clear()
            with torch.inference_mode(False), torch.no_grad():  # usable later with autograd on
                rates = rate.exp().to(dtype)[None, :, None].expand_as(bias.rates)
                dense = self._dense_cache[key] = replace(bias, rates=rates, precomputed=None).dense()
        return dense


@register_attention("decay")
class ManhattanDecayAttention(SoftmaxAttention):
    """RMT decay attention: :class:`SoftmaxAttention` with a :class:`FixedDecay` bias; ``options``: those of
    :class:`FixedDecay` (``gamma_a``, ``gamma_b``, ``learnable_decay``, ``decomposed``) and of the mixer."""

    legacy_keys: ClassVar[dict[str, str | None]] = {"log_rate": "bias.log_rate", "decay.": "bias."}

    def __init__(self, dim: int, **options: Any) -> None:
        decay, options = part_options(FixedDecay, options)
        super().__init__(dim, bias=partial(FixedDecay, **decay), **options)

    @property
    def gammas(self) -> torch.Tensor:
        """Current per-head decay ``gamma_h`` ``[heads]``."""
        return self.bias.gammas
