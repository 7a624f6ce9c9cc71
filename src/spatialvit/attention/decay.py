"""Fixed Manhattan spatial decay (RMT's MaSA): ``softmax(q k^T / sqrt(d) + log(gamma_h) * D_ij) v``.

Per-head ``gamma_h = 1 - 2^-(a + b*h/heads)``, fixed or learnable. ``decomposed=True`` gives RMT's high-resolution
form: attention along each row (with the 1D decay ``|x_i - x_j|``, prefix tokens as extra bias-free keys), then
along each column (``|y_i - y_j|``) over the row step's output. Prefix-token queries attend to all tokens plainly.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .kernels import reference_attention, sdpa_attention
from .manhattan import ManhattanBias
from .registry import register_attention
from .softmax import SoftmaxAttention


def gamma_schedule(num_heads: int, a: float = 2.0, b: float = 4.0) -> torch.Tensor:
    """Per-head decay ``gamma_h = 1 - 2^-(a + b*h/num_heads)`` ``[num_heads]`` (RMT: a=2, b = head range)."""
    return 1 - 2 ** -(a + b * torch.arange(num_heads, dtype=torch.float64) / num_heads)


@register_attention("decay")
class ManhattanDecayAttention(SoftmaxAttention):
    """RMT decay attention. ``gamma_a``, ``gamma_b``: schedule; ``learnable_decay``: train ``log(-log gamma)``."""

    supported_backends = ("factorised", "flex", "sdpa", "reference")

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
        learnable_decay: bool = False,
        decomposed: bool = False,
    ) -> None:
        super().__init__(dim, num_heads, num_prefix_tokens, qkv_bias, attn_drop, proj_drop, backend)
        if decomposed and self.backend not in ("auto", "sdpa", "reference"):
            raise ValueError(f"decomposed decay runs on backend 'sdpa' or 'reference', got {self.backend!r}")
        self.decomposed = decomposed
        log_rate = (-gamma_schedule(num_heads, gamma_a, gamma_b).log()).log().float()
        if learnable_decay:
            self.log_rate = nn.Parameter(log_rate)
        else:
            self.register_buffer("log_rate", log_rate)

    @property
    def gammas(self) -> torch.Tensor:
        """Current per-head decay ``gamma_h`` ``[heads]``."""
        return torch.exp(-self.log_rate.exp())

    def spatial_bias(self, x: torch.Tensor, grid: tuple[int, int]) -> ManhattanBias:
        rates = self.log_rate.exp().to(x.dtype)[None, :, None].expand(1, -1, grid[0] * grid[1])
        return ManhattanBias(grid, rates, self.num_prefix_tokens, constant=True)

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        x: torch.Tensor,
        grid: tuple[int, int],
        return_attn: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if not self.decomposed:
            return super().attend(q, k, v, x, grid, return_attn)
        dropout_p = self.attn_drop if self.training else 0.0
        if return_attn or self.backend == "reference":
            return self._decomposed_reference(q, k, v, grid, dropout_p)
        return self._decomposed_sdpa(q, k, v, grid, dropout_p), None

    def _line_bias(self, n: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """1D decay ``-rate_h * |i - j|`` ``[heads, n, n]``."""
        pos = torch.arange(n, device=device, dtype=dtype)
        return -self.log_rate.exp().to(dtype)[:, None, None] * (pos[:, None] - pos[None]).abs()

    def _decomposed_sdpa(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int], dropout_p: float
    ) -> torch.Tensor:
        """Rows then columns as batched SDPA calls with ``W x W`` and ``H x H`` biases (no N x N tensor)."""
        (B, h, _, d), P, (H, W) = q.shape, self.num_prefix_tokens, grid
        qg, kg, vg = (t[:, :, P:].unflatten(2, (H, W)) for t in (q, k, v))  # [B, h, H, W, d]
        row_bias = self._line_bias(W, q.dtype, q.device)
        row_bias = nn.functional.pad(row_bias, (P, 0))[:, None].expand(h, H, W, P + W).reshape(1, h * H, W, P + W)
        k_row = torch.cat([k[:, :, None, :P].expand(B, h, H, P, d), kg], 3).reshape(B, h * H, P + W, d)
        v_row = torch.cat([v[:, :, None, :P].expand(B, h, H, P, d), vg], 3).reshape(B, h * H, P + W, d)
        rows = sdpa_attention(qg.reshape(B, h * H, W, d), k_row, v_row, row_bias, self.scale, dropout_p)
        col_bias = self._line_bias(H, q.dtype, q.device)[:, None].expand(h, W, H, H).reshape(1, h * W, H, H)
        cols = sdpa_attention(
            *(t.transpose(2, 3).reshape(B, h * W, H, d) for t in (qg, kg, rows.view(B, h, H, W, d))),
            col_bias,
            self.scale,
            dropout_p,
        )
        grid_out = cols.view(B, h, W, H, d).transpose(2, 3).reshape(B, h, H * W, d)
        if P == 0:
            return grid_out
        prefix_out = sdpa_attention(q[:, :, :P], k, v, None, self.scale, dropout_p)
        return torch.cat([prefix_out, grid_out], 2)

    def _decomposed_reference(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, grid: tuple[int, int], dropout_p: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Both steps as masked dense ``[N, N]`` attentions; returns the composite map ``A_col @ A_row``."""
        P, W, N = self.num_prefix_tokens, grid[1], q.shape[2]
        rate = self.log_rate.exp().to(q.dtype)[:, None, None]
        idx = torch.arange(N, device=q.device)
        y, x = ((idx - P) // W).to(q.dtype), ((idx - P) % W).to(q.dtype)
        is_grid = idx >= P
        both = is_grid[:, None] & is_grid[None]
        same_row, same_col = both & (y[:, None] == y[None]), both & (x[:, None] == x[None])
        inf = torch.tensor(-math.inf, dtype=q.dtype, device=q.device)
        # row step: grid queries see their row (1D decay) and the prefix keys; prefix queries see everything
        row = torch.where(same_row, -rate * (x[:, None] - x[None]).abs(), inf)
        row = torch.where(~is_grid[:, None] | ~is_grid[None], 0.0, row)
        # column step: grid queries see their column; prefix queries keep their row-step output (identity)
        col = torch.where(same_col, -rate * (y[:, None] - y[None]).abs(), inf)
        col = torch.where(~is_grid[:, None] & (idx[:, None] == idx[None]), 0.0, col)
        _, a_row = reference_attention(q, k, v, row, self.scale)
        _, a_col = reference_attention(q, k, v, col, self.scale)
        if dropout_p > 0:
            a_row, a_col = nn.functional.dropout(a_row, dropout_p), nn.functional.dropout(a_col, dropout_p)
        attn = a_col @ a_row
        return attn @ v, attn
