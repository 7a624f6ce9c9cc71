"""The Manhattan log-decay bias shared by fixed (RMT) and context-aware (SDT) decay, in every backend's form.

On an ``H x W`` grid with ``D_ij = |y_i - y_j| + |x_i - x_j|`` and per-token, per-head rates ``rho >= 0``:

- ``pairwise``: ``B_ij = -(rho_i + rho_j) / 2 * D_ij`` (fixed decay: ``rho = -log(gamma_h)`` for every token);
- ``warped``: ``B_ij = -(|cx_i - cx_j| + |cy_i - cy_j|)`` with ``cx``/``cy`` the cumulative sums of ``rho`` along
  each row / column (a constant rate gives the pairwise form back).

Prefix tokens get no bias (0 to and from them). The bias is available dense (``[b, h, N, N]``, reference/sdpa), as a
FlexAttention ``score_mod`` (no N x N tensor) and, for the pairwise form, as exact low-rank q/k columns
(``factorised`` backend; derivation in docs/attention.md).

``decomposed=True`` marks RMT's high-resolution form instead: attention along each row with the 1D pairwise decay
``-(rho_i + rho_j)/2 * |x_i - x_j|``, then along each column with ``|y_i - y_j|`` (two softmaxes, not equal to the
2D decay): :meth:`ManhattanBias.line_biases` per row/column, :meth:`ManhattanBias.decomposed_dense` as two masked
``[b, h, N, N]`` biases for the reference.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .bias import ScoreMod, SpatialBias

FORMS = ("pairwise", "warped")
# The kernels that compute each form exactly (:mod:`.backend`): the full 2D pairwise form has every form of
# :class:`~.bias.SpatialBias`; the warped form no low-rank or pairwise-rate form; the decomposed form two passes.
PAIRWISE_BACKENDS = ("factorised", "flex", "sdpa", "bmm", "reference", "chunked")
WARPED_BACKENDS = ("flex", "sdpa", "bmm", "reference")
DECOMPOSED_BACKENDS = ("sdpa", "reference")
# Tensors that depend only on the grid (distances, step features) are built once per (grid, prefix, device, dtype)
# and kept (at most GRID_CACHE_SIZE of each): read-only, shared by every layer and call. An N x N distance is kept
# up to HALF_DISTANCE_CACHE_MAX entries (16 MiB in float32, N = 2048); larger ones are built per call.
GRID_CACHE_SIZE = 32
HALF_DISTANCE_CACHE_MAX = 2**22


def decay_backends(form: str, decomposed: bool) -> tuple[str, ...]:
    """The kernels that compute a Manhattan decay of ``form`` (decomposed or not) exactly."""
    if decomposed:
        return DECOMPOSED_BACKENDS
    return PAIRWISE_BACKENDS if form == "pairwise" else WARPED_BACKENDS


def gamma_schedule(num_heads: int, a: float = 2.0, b: float = 4.0) -> torch.Tensor:
    """Per-head decay ``gamma_h = 1 - 2^-(a + b*h/num_heads)`` ``[num_heads]`` (RMT: a=2, b = head range)."""
    return 1 - 2 ** -(a + b * torch.arange(num_heads, dtype=torch.float64) / num_heads)


class DecaySource(nn.Module):
    """What the Manhattan decay bias sources share: the schedule ``gamma_h = 1 - 2^-(a + b*h/heads)`` of their
    initial rates (``gamma_a``, ``gamma_b``), their ``form`` (``pairwise`` or ``warped``), whether it is
    ``decomposed``, the kernels that compute it (``backends``) and their name in errors (``what``)."""

    def __init__(
        self, num_heads: int, *, gamma_a: float = 2.0, gamma_b: float = 4.0, form: str = "pairwise",
        decomposed: bool = False, what: str,
    ) -> None:  # fmt: skip
        super().__init__()
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {form!r}")
        if decomposed and form != "pairwise":
            raise ValueError(f"the decomposed {what} takes the 'pairwise' form, got {form!r}")
        self.num_heads, self.gamma_a, self.gamma_b = num_heads, gamma_a, gamma_b
        self.form, self.decomposed, self.what = form, decomposed, what
        self.backends = decay_backends(form, decomposed)

    def initial_gammas(self) -> torch.Tensor:
        """The schedule's per-head decay ``gamma_h`` ``[heads]`` (float64)."""
        return gamma_schedule(self.num_heads, self.gamma_a, self.gamma_b)


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


def grid_cached(build: Callable[..., object]) -> Callable[..., object]:
    """Cache ``build(grid, ..., device, dtype)`` per arguments: built once outside autograd and inference mode (so
    the tensors can be saved for backward later), rebuilt (not cached) while ``torch.compile`` traces."""
    cached = functools.lru_cache(maxsize=GRID_CACHE_SIZE)(build)

    @functools.wraps(build)
    def get(*args: object) -> object:
        if torch.compiler.is_compiling():
            return build(*args)
        with torch.inference_mode(False), torch.no_grad():
            return cached(*args)

    get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return get


def half_distance(grid: tuple[int, int], num_prefix: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``-D/2`` ``[P+H*W, P+H*W]`` with zero rows and columns for the ``num_prefix`` prefix tokens (cached up to
    ``HALF_DISTANCE_CACHE_MAX`` entries; never modify it).

    The pairwise bias is ``(rho_i + rho_j) * half_distance`` with zero-padded rates: two passes over N x N memory,
    prefix rows and columns 0 without a pad. Bit-identical to ``-0.5 * (rho_i + rho_j) * D`` (the 1/2 is exact).
    """
    n = num_prefix + grid[0] * grid[1]
    build = _half_distance if n * n > HALF_DISTANCE_CACHE_MAX else _cached_half_distance
    return build(tuple(grid), num_prefix, torch.device(device), dtype)


def _half_distance(grid: tuple[int, int], num_prefix: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return F.pad(-0.5 * manhattan_distance(grid, device).to(dtype), (num_prefix, 0, num_prefix, 0))


_cached_half_distance = grid_cached(_half_distance)


@grid_cached
def cached_step_features(grid: tuple[int, int], device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """:func:`step_features` in ``dtype`` (cached)."""
    return tuple(t.to(dtype) for t in step_features(grid, device))


@grid_cached
def padded_coords(grid: tuple[int, int], num_prefix: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column ``[P+H*W]`` of every token, 0 for prefix tokens (cached; FlexAttention's ``score_mod``)."""
    return tuple(F.pad(c, (num_prefix, 0)) for c in grid_coords(grid, device))


def pair_bias(
    rates: torch.Tensor, half: torch.Tensor, rows: slice = slice(None), out: torch.Tensor | None = None
) -> torch.Tensor:
    """The pairwise bias ``(r_i + r_j) * half_ij`` ``[b, h, len(rows), N]`` for the query rows ``rows`` (``half``:
    those rows of :func:`half_distance`; ``rates [b, h, N]`` zero-padded for prefix tokens), in two passes, into
    ``out`` when given."""
    return torch.add(rates[:, :, rows, None], rates[:, :, None, :], out=out).mul_(half)


def pad_rates(rates: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """Rates ``[b, h, H*W]`` -> ``[b, h, P+H*W]`` with 0 for prefix tokens."""
    return F.pad(rates, (num_prefix, 0)) if num_prefix else rates


@dataclass
class ManhattanBias(SpatialBias):
    """Decay bias on ``grid`` after ``num_prefix`` prefix tokens.

    ``rates [b, h, H*W]`` (``b`` is 1 for content-independent rates, else the batch); ``constant`` marks rates
    that are the same for every token (fixed decay), which factorises with fewer columns; ``decomposed`` asks for
    the row-then-column form (pairwise rates only); ``precomputed``: where the bias source keeps the dense form (fixed
    rates that need no gradient), the function that returns it, called by :meth:`dense` instead of building it.
    """

    grid: tuple[int, int]
    rates: torch.Tensor
    num_prefix: int = 0
    form: str = "pairwise"
    constant: bool = False
    decomposed: bool = False
    precomputed: Callable[[], torch.Tensor] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"decay form must be one of {FORMS}, got {self.form!r}")
        if self.decomposed and self.form != "pairwise":
            raise ValueError(f"the decomposed form takes pairwise rates, got the {self.form!r} form")

    @property
    def pairwise(self) -> bool:
        """Whether this is the full 2D pairwise form (exact low-rank columns and pairwise rates)."""
        return self.form == "pairwise" and not self.decomposed

    @property
    def kept(self) -> bool:
        return self.precomputed is not None

    @property
    def requires_grad(self) -> bool:
        return torch.is_grad_enabled() and self.rates.requires_grad

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
        if self.precomputed is not None:
            return self.precomputed()
        r = self.rates
        if self.form == "pairwise":
            half = half_distance(self.grid, self.num_prefix, r.device, r.dtype)
            if self.constant:  # -c D = (2c) (-D/2): one pass over h x N x N, no batch dimension
                return (2 * r[..., :1, None]) * half
            return pair_bias(pad_rates(r, self.num_prefix), half)
        cx, cy = self._cumulative()
        bias = -((cx[..., :, None] - cx[..., None, :]).abs() + (cy[..., :, None] - cy[..., None, :]).abs())
        return self._pad(bias, 2)

    def pairwise_rates(self) -> torch.Tensor | None:
        """Rates ``[b, h, N]`` with 0 for prefix tokens (the pairwise kernels' input; ``None``: another form)."""
        return pad_rates(self.rates, self.num_prefix) if self.pairwise else None

    def columns(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``q_extra, k_extra [b, h, N, E]`` with ``q_extra @ k_extra^T`` = the bias up to per-query constants.

        Per-query constants cancel in the softmax. Prefix queries get zero columns (zero bias in their rows); prefix
        keys get one column that carries the grid query's constant, so every row stays a pure per-row shift.
        """
        if not self.pairwise:
            return None
        r = self.rates
        U, s = cached_step_features(tuple(self.grid), r.device, r.dtype)
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

    def score_mod(self, batch: int) -> ScoreMod:
        """FlexAttention ``score_mod(score, b, h, q_idx, kv_idx)`` adding the bias from coordinates and rates."""
        P = self.num_prefix
        if self.form == "pairwise":
            y, x = padded_coords(tuple(self.grid), P, self.rates.device)
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

    def line_biases(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Decomposed form: the row pass's bias ``[b, h, H, W, W]`` among the tokens of each row and the column
        pass's ``[b, h, W, H, H]`` among the tokens of each column (prefix tokens not included)."""
        H, W = self.grid
        r = self.rates.unflatten(-1, (H, W))  # [b, h, H, W]
        return _line_bias(r, W), _line_bias(r.transpose(-1, -2), H)

    def decomposed_dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Decomposed form as two masked biases ``[b, h, N, N]`` for a materialised softmax each.

        Row pass: a grid query sees its row (1D decay) and the prefix keys (bias 0); a prefix query sees every token.
        Column pass (over the row pass's output): a grid query sees its column; a prefix query only itself.
        """
        P, (H, W) = self.num_prefix, self.grid
        r = self.rates
        idx = torch.arange(H * W, device=r.device)
        y, x = (idx // W).to(r.dtype), (idx % W).to(r.dtype)
        pair = -0.5 * (r[..., :, None] + r[..., None, :])
        inf = torch.tensor(-math.inf, dtype=r.dtype, device=r.device)
        row = torch.where(y[:, None] == y[None], pair * (x[:, None] - x[None]).abs(), inf)
        col = torch.where(x[:, None] == x[None], pair * (y[:, None] - y[None]).abs(), inf)
        row = F.pad(row, (P, 0, P, 0))  # prefix rows and columns: 0 (no decay, nothing masked)
        ids = torch.arange(P + H * W, device=r.device)
        prefix_self = (ids[:, None] < P) & (ids[:, None] == ids[None])
        col = torch.where(prefix_self, 0.0, F.pad(col, (P, 0, P, 0), value=-math.inf))
        return row, col


def _line_bias(r: torch.Tensor, n: int) -> torch.Tensor:
    """``-(r_i + r_j)/2 * |i - j|`` ``[..., lines, n, n]`` for rates ``r[..., lines, n]`` along lines of n tokens."""
    pos = torch.arange(n, device=r.device, dtype=r.dtype)
    return -0.5 * (r[..., :, None] + r[..., None, :]) * (pos[:, None] - pos[None]).abs()
