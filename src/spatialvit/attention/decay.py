"""Fixed Manhattan spatial decay (RMT's MaSA): ``softmax(q k^T / sqrt(d) + log(gamma_h) * D_ij) v``.

Per-head ``gamma_h = 1 - 2^-(a + b*h/heads)``, fixed or learnable. ``decomposed=True`` gives RMT's high-resolution
form: attention along each row (with the 1D decay ``|x_i - x_j|``, prefix tokens as extra bias-free keys), then
along each column (``|y_i - y_j|``) over the row step's output. Prefix-token queries attend to all tokens plainly.
RMT's block extras are options, off by default so the decay is measured by itself: ``rope=True`` rotates grid
tokens' q/k by their row (half the channels) and column (other half); ``lepe_kernel=k`` adds a depthwise ``k x k``
conv of V over the grid to the output (RMT's LePE, k=5 there).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .kernels import reference_attention, sdpa_attention
from .manhattan import ManhattanBias, grid_coords
from .registry import register_attention
from .softmax import SoftmaxAttention


def rope_2d(t: torch.Tensor, grid: tuple[int, int], num_prefix: int, base: float = 10000.0) -> torch.Tensor:
    """Axial 2D rotary embedding of grid tokens in ``t[B, h, N, d]`` (prefix tokens unchanged; ``d % 4 == 0``)."""
    d = t.shape[-1]
    y, x = grid_coords(grid, t.device)
    freqs = base ** -(torch.arange(d // 4, device=t.device, dtype=t.dtype) / (d // 4))
    angle = torch.cat([y.to(t.dtype)[:, None] * freqs, x.to(t.dtype)[:, None] * freqs], -1).repeat(1, 2)  # [H*W, d]
    g = t[..., num_prefix:, :]
    half = torch.cat([-g[..., d // 2 :], g[..., : d // 2]], -1)
    return torch.cat([t[..., :num_prefix, :], g * angle.cos() + half * angle.sin()], -2)


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
        rope: bool = False,
        lepe_kernel: int = 0,
    ) -> None:
        super().__init__(dim, num_heads, num_prefix_tokens, qkv_bias, attn_drop, proj_drop, backend)
        if rope and self.head_dim % 4:
            raise ValueError(f"rope needs head_dim divisible by 4, got {self.head_dim}")
        if lepe_kernel < 0 or (lepe_kernel and lepe_kernel % 2 == 0):
            raise ValueError(f"lepe_kernel must be 0 (off) or a positive odd number, got {lepe_kernel}")
        self.rope = rope
        self.lepe = nn.Conv2d(dim, dim, lepe_kernel, padding=lepe_kernel // 2, groups=dim) if lepe_kernel else None
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

    def project(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = super().project(x, grid)
        if self.rope:
            q, k = (rope_2d(t, grid, self.num_prefix_tokens) for t in (q, k))
        return q, k, v

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
        dropout_p = self.attn_drop if self.training else 0.0
        if not self.decomposed:
            out, attn = super().attend(q, k, v, x, grid, return_attn)
        elif return_attn or self.backend == "reference":
            out, attn = self._decomposed_reference(q, k, v, grid, dropout_p)
        else:
            out, attn = self._decomposed_sdpa(q, k, v, grid, dropout_p), None
        return (out if self.lepe is None else out + self._lepe(v, grid)), attn

    def _lepe(self, v: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Depthwise conv of the grid tokens' values, ``[B, h, N, d]`` (zero for prefix tokens)."""
        B, h, N, d = v.shape
        P = self.num_prefix_tokens
        fmap = v[:, :, P:].transpose(1, 2).reshape(B, N - P, h * d).transpose(1, 2).unflatten(2, grid)
        out = self.lepe(fmap).flatten(2).view(B, h, d, N - P).transpose(2, 3)
        return nn.functional.pad(out, (0, 0, P, 0))

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
