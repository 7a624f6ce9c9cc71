"""The Manhattan log-decay bias shared by fixed (RMT) and context-aware (SDT) decay, in every backend's form.

On an ``H x W`` grid with ``D_ij = |y_i - y_j| + |x_i - x_j|`` and per-token, per-head rates ``rho >= 0``:

- ``pairwise``: ``B_ij = -(rho_i + rho_j) / 2 * D_ij`` (fixed decay: ``rho = -log(gamma_h)`` for every token);
- ``warped``: ``B_ij = -(|cx_i - cx_j| + |cy_i - cy_j|)`` with ``cx``/``cy`` the cumulative sums of ``rho`` along
  each row / column (a constant rate gives the pairwise form back).

Prefix tokens get no bias (0 to and from them). The bias is available dense (``[b, h, N, N]``, reference/sdpa), as a
FlexAttention ``score_mod`` (no N x N tensor) and, for the pairwise form, as exact low-rank q/k columns
(``factorised`` backend; derivation in docs/attention.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

FORMS = ("pairwise", "warped")


def grid_coords(grid: tuple[int, int], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index ``[H*W]`` (float, row-major) of every grid token."""
    H, W = grid
    idx = torch.arange(H * W, device=device)
    return (idx // W).float(), (idx % W).float()


def manhattan_distance(grid: tuple[int, int], device: torch.device | None = None) -> torch.Tensor:
    """``D[H*W, H*W]``: city-block distance between grid tokens."""
    y, x = grid_coords(grid, device)
    return (y[:, None] - y[None]).abs() + (x[:, None] - x[None]).abs()


def step_features(grid: tuple[int, int], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``U[H*W, H+W-2]`` with ``U[i, t] = 1[y_i > t]`` (rows) then ``1[x_i > t]`` (columns), and ``s = U.sum(-1)``.

    ``D_ij = s_i + s_j - 2 U_i . U_j`` exactly, because ``U_i . U_j = min(y_i, y_j) + min(x_i, x_j)``.
    """
    H, W = grid
    y, x = grid_coords(grid, device)
    U = torch.cat([y[:, None] > torch.arange(H - 1, device=device), x[:, None] > torch.arange(W - 1, device=device)], 1)
    U = U.float()
    return U, U.sum(-1)


@dataclass
class ManhattanBias:
    """Decay bias on ``grid`` after ``num_prefix`` prefix tokens.

    ``rates [b, h, H*W]`` (``b`` is 1 for content-independent rates, else the batch); ``constant`` marks rates
    that are the same for every token (fixed decay), which factorises with fewer columns.
    """

    grid: tuple[int, int]
    rates: torch.Tensor
    num_prefix: int = 0
    form: str = "pairwise"
    constant: bool = False

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"decay form must be one of {FORMS}, got {self.form!r}")

    @property
    def factorisable(self) -> bool:
        """Whether the ``factorised`` backend computes this bias exactly (the pairwise form)."""
        return self.form == "pairwise"

    def _pad(self, t: torch.Tensor, dims: int) -> torch.Tensor:
        """Zero rows (and columns if ``dims == 2``) for the prefix tokens in front of the grid tokens."""
        P = self.num_prefix
        return F.pad(t, (P, 0) * dims) if dims == 2 else F.pad(t, (0, 0, P, 0))

    def _cumulative(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``cx, cy [b, h, H*W]``: cumulative rates along each row and down each column."""
        H, W = self.grid
        r = self.rates.unflatten(-1, (H, W))
        return r.cumsum(-1).flatten(-2), r.cumsum(-2).flatten(-2)

    def dense(self) -> torch.Tensor:
        """The bias ``[b, h, N, N]`` including zero rows/columns for prefix tokens."""
        r = self.rates
        if self.form == "pairwise":
            D = manhattan_distance(self.grid, r.device).to(r.dtype)
            bias = -0.5 * (r[..., :, None] + r[..., None, :]) * D
        else:
            cx, cy = self._cumulative()
            bias = -((cx[..., :, None] - cx[..., None, :]).abs() + (cy[..., :, None] - cy[..., None, :]).abs())
        return self._pad(bias, 2)

    def columns(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``q_extra, k_extra [b, h, N, E]`` with ``q_extra @ k_extra^T`` = the bias up to per-query constants.

        Per-query constants cancel in the softmax. Prefix queries get zero columns (zero bias in their rows); prefix
        keys get one column that carries the grid query's constant, so every row stays a pure per-row shift.
        """
        if not self.factorisable:
            raise ValueError(f"the {self.form!r} decay has no exact low-rank form; use backend 'sdpa' or 'flex'")
        r = self.rates
        U, s = step_features(self.grid, r.device)
        U, s = U.to(r.dtype), s.to(r.dtype)
        b, h, n = r.shape
        Ub, sb = U.expand(b, h, n, -1), s.expand(b, h, n)[..., None]
        if self.constant:  # -c D_ij = -c s_j + 2c U_i.U_j - c s_i
            c = r[..., :1, None].expand(b, h, n, 1)
            q = torch.cat([-c, 2 * c * Ub], -1)
            k = torch.cat([sb, Ub], -1)
            dropped = c * sb  # the query-only term left out above, with its sign flipped
        else:  # -(r_i + r_j)/2 (s_i + s_j - 2 U_i.U_j) = (these columns) - r_i s_i / 2
            ri = r[..., None]
            half = torch.full_like(ri, -0.5)
            q = torch.cat([-0.5 * ri, ri * Ub, -0.5 * sb, half, Ub], -1)
            k = torch.cat([sb.expand_as(ri), Ub, ri, ri * sb, ri * Ub], -1)
            dropped = 0.5 * ri * sb
        if not self.num_prefix:
            return q, k
        # The query-only term cancels in the softmax only if every key of the row gets it, prefix keys included:
        # one more column gives each prefix key the same shift (q: the shift, k: 1 on prefix keys, 0 on the grid).
        P = self.num_prefix
        q = self._pad(torch.cat([q, dropped], -1), 1)
        is_prefix = (torch.arange(P + n, device=k.device) < P).to(k.dtype)[:, None].expand(b, h, P + n, 1)
        k = torch.cat([self._pad(k, 1), is_prefix], -1)
        return q, k

    def score_mod(self, batch: int) -> Callable[..., torch.Tensor]:
        """FlexAttention ``score_mod(score, b, h, q_idx, kv_idx)`` adding the bias from coordinates and rates."""
        P = self.num_prefix
        if self.form == "pairwise":
            y, x = (self._pad(c[:, None], 1)[:, 0] for c in grid_coords(self.grid, self.rates.device))
            r = self._pad(self.rates[..., None], 1)[..., 0].expand(batch, -1, -1).contiguous()

            def decay(score, b, h, qi, ki):
                d = (y[qi] - y[ki]).abs() + (x[qi] - x[ki]).abs()
                bias = -0.5 * (r[b, h, qi] + r[b, h, ki]) * d
                return score + torch.where((qi >= P) & (ki >= P), bias, 0.0)

        else:
            cx, cy = (self._pad(c[..., None], 1)[..., 0].expand(batch, -1, -1).contiguous() for c in self._cumulative())

            def decay(score, b, h, qi, ki):
                bias = -((cx[b, h, qi] - cx[b, h, ki]).abs() + (cy[b, h, qi] - cy[b, h, ki]).abs())
                return score + torch.where((qi >= P) & (ki >= P), bias, 0.0)

        return decay
