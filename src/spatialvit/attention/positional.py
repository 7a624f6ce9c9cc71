"""Positional attention (Jelassi et al. 2022) and ConViT's gated positional self-attention (GPSA, d'Ascoli et al.
2021).

Positional attention: ``A = softmax((P W_q)(P W_k)^T / sqrt(d))`` from absolute positional encodings ``P`` only,
values from content (``V = X W_v``), output ``A V``. ``P`` is a learned grid ``[1, gh, gw, C]`` (resampled bicubically
to other grids, gradients flowing through) or fixed 2D sin-cos. Prefix tokens get their own learned positional
vectors, so their rows and columns of ``A`` are position-only too.

GPSA, as ConViT: ``((1 - sigmoid(lambda_h)) softmax(q k^T / sqrt(d)) + sigmoid(lambda_h) A_h) V`` with a learnable
per-head gate ``lambda_h`` (init 1) and *relative* positional scores ``A_h = softmax_j(w_h . r_ij)``, where
``r_ij = (dx, dy, dx^2 + dy^2)`` is the offset from query ``i`` to key ``j`` in tokens and ``w_h`` a per-head
projection (ConViT's ``pos_proj``). The locality initialisation sets ``w_h = alpha (2 dx_h, 2 dy_h, -1)``, so
``w_h . r_ij = -alpha |r_ij - delta_h|^2 + const``: head ``h`` starts as a Gaussian around its own offset
``delta_h`` with locality strength ``alpha``; it also sets the value projection to the identity.

Both maps are ``[1, heads, N, N]``: computed once per forward from parameters (the autograd graph sees them) and
grid-only constants (cached), then applied to the whole batch as one matmul (no per-image work).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from .backend import MAP_BACKENDS, blended_attention, check_backend, mapped_attention, resolve_backend
from .base import TokenMixer, merge_heads
from .bias import SpatialBias
from .posenc import resample_pos_embed, sincos_pos_embed_2d
from .registry import register_attention
from .softmax import SoftmaxAttention

POS_TYPES = ("learned", "sincos")


class PositionalMap(nn.Module):
    """``A [1, heads, N, N] = softmax((P W_q)(P W_k)^T * scale)`` from absolute positional encodings alone.

    ``pos_type``: ``'learned'`` grid ``[1, gh, gw, C]`` (``pos_grid``; the ViT passes its patch grid) or
    ``'sincos'``; prefix tokens get learned vectors.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        num_prefix_tokens: int,
        pos_type: str,
        pos_grid: int | tuple[int, int],
        bias: bool,
    ) -> None:
        super().__init__()
        if pos_type not in POS_TYPES:
            raise ValueError(f"pos_type must be one of {POS_TYPES}, got {pos_type!r}")
        gh, gw = (pos_grid, pos_grid) if isinstance(pos_grid, int) else pos_grid
        self.dim, self.num_heads, self.scale = dim, num_heads, (dim // num_heads) ** -0.5
        self.pos = nn.Parameter(torch.randn(1, gh, gw, dim)) if pos_type == "learned" else None
        self.prefix_pos = nn.Parameter(torch.randn(1, num_prefix_tokens, dim)) if num_prefix_tokens else None
        self.qk = nn.Linear(dim, 2 * dim, bias=bias)

    def forward(self, grid: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """The map for ``grid`` in ``like``'s dtype/device."""
        if self.pos is not None:
            P = resample_pos_embed(self.pos, grid).flatten(1, 2)
        else:
            P = sincos_pos_embed_2d(grid, self.dim).flatten(0, 1)[None]
        if self.prefix_pos is not None:
            P = torch.cat([self.prefix_pos, P.to(self.prefix_pos)], 1)
        q, k = self.qk(P.to(like)).unflatten(-1, (2, self.num_heads, -1)).permute(2, 0, 3, 1, 4)
        return ((q @ k.transpose(-2, -1)) * self.scale).softmax(-1)


def relative_offsets(grid: tuple[int, int]) -> Tensor:
    """ConViT's relative position features ``[H*W, H*W, 3]``: ``(dx, dy, dx^2 + dy^2)`` from each query token to each
    key token (row-major grid, ``dx = x_key - x_query`` in tokens, ``dy`` likewise along the rows)."""
    H, W = grid
    idx = torch.arange(H * W)
    y, x = idx // W, idx % W
    dx = (x[None, :] - x[:, None]).float()
    dy = (y[None, :] - y[:, None]).float()
    return torch.stack([dx, dy, dx * dx + dy * dy], -1)


def locality_offsets(num_heads: int) -> Tensor:
    """ConViT's head offsets ``delta_h = (dx_h, dy_h)`` ``[k*k, 2]``: the first ``k*k`` heads (``k =
    floor(sqrt(heads))``) on a ``k x k`` grid centred on the query (e.g. 4 heads: ``(+-0.5, +-0.5)``; 9 heads: the
    3x3 neighbourhood); head ``h1 + k*h2`` looks at ``(h2 - c, h1 - c)``, ``c = (k - 1) / 2``."""
    k = math.isqrt(num_heads)
    c = (k - 1) / 2
    return torch.tensor([[p // k - c, p % k - c] for p in range(k * k)])


class RelativePositionalMap(nn.Module):
    """ConViT's positional scores: ``A [1, heads, N, N]``, ``A_h = softmax_j(w_h . r_ij)`` with the relative features
    ``r_ij`` of :func:`relative_offsets` and a per-head projection ``pos_proj`` (``Linear(3, heads)``; ConViT's bias
    is left out: it adds a constant to every score of a row, which the softmax removes, so it never learns).

    ``local_init``: ConViT's locality initialisation with strength ``locality_strength`` (see :meth:`local_init`);
    otherwise ``pos_proj`` keeps ConViT's trunc-normal(0.02) init, i.e. nearly uniform maps.

    Prefix tokens have no position. A prefix key ``p`` gets the learned per-head score ``prefix_logit[h, p]`` in every
    row (init 0: scored like a key at the query's own position), and a prefix query scores every grid key 0, i.e.
    attends uniformly over the grid besides the prefix keys. (ConViT's GPSA layers never see the class token: it
    joins after them.)
    """

    def __init__(
        self, num_heads: int, num_prefix_tokens: int, locality_strength: float = 1.0, local_init: bool = True
    ) -> None:
        super().__init__()
        if locality_strength <= 0:
            raise ValueError(f"locality_strength must be positive, got {locality_strength}")
        self.num_heads, self.num_prefix_tokens = num_heads, num_prefix_tokens
        self.locality_strength, self.use_local_init = locality_strength, local_init
        self.pos_proj = nn.Linear(3, num_heads, bias=False)
        nn.init.trunc_normal_(self.pos_proj.weight, std=0.02)
        self.prefix_logit = nn.Parameter(torch.zeros(num_heads, num_prefix_tokens)) if num_prefix_tokens else None
        self._features: dict[tuple[int, int, torch.device], Tensor] = {}  # grid-only constants, not state
        if local_init:
            self.local_init()

    @torch.no_grad()
    def local_init(self) -> None:
        """Head ``h < k*k`` scores ``alpha (2 dx_h dx + 2 dy_h dy - dx^2 - dy^2) = -alpha |r - delta_h|^2 + const``:
        a Gaussian around its offset ``delta_h`` (:func:`locality_offsets`); other heads keep their weights. Then, as
        ConViT, every head's weights are scaled by ``alpha = locality_strength``."""
        w = self.pos_proj.weight
        delta = locality_offsets(self.num_heads).to(w)
        w[: len(delta), :2] = 2 * delta
        w[: len(delta), 2] = -1.0
        w.mul_(self.locality_strength)

    def features(self, grid: tuple[int, int], device: torch.device) -> Tensor:
        """:func:`relative_offsets` of ``grid`` on ``device`` (cached: they depend on the grid alone)."""
        key = (int(grid[0]), int(grid[1]), torch.device(device))
        if key not in self._features:
            if len(self._features) >= 8:
                self._features.clear()
            self._features[key] = relative_offsets(grid).to(device)
        return self._features[key]

    def forward(self, grid: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
        """The map for ``grid`` in ``like``'s dtype/device: ``[1, heads, N, N]``, rows summing to 1."""
        w = self.pos_proj.weight.to(like.dtype)
        scores = torch.einsum("ijc,hc->hij", self.features(grid, like.device).to(like.dtype), w)
        P = self.num_prefix_tokens
        if P:
            G = scores.shape[-1]
            prefix = self.prefix_logit.to(like.dtype)[:, None, :]  # [h, 1, P]
            top = torch.cat([prefix.expand(-1, P, -1), scores.new_zeros(self.num_heads, P, G)], -1)
            scores = torch.cat([top, torch.cat([prefix.expand(-1, G, -1), scores], -1)], -2)
        return scores.softmax(-1)[None]


@register_attention("positional")
class PositionalAttention(TokenMixer):
    """Attention weights from positions only (:class:`PositionalMap`: ``pos_type``, ``pos_grid``); values
    ``v_proj(x)`` from content; then the output projection. The map is materialised (``backend`` may only be
    ``'auto'`` or ``'reference'``); ``options``: those every mixer takes (:class:`TokenMixer`)."""

    def __init__(
        self, dim: int, *, pos_type: str = "learned", pos_grid: int | tuple[int, int] = 8, **options: Any
    ) -> None:
        super().__init__(dim, **options)
        self.backend = check_backend(self.backend, MAP_BACKENDS, "positional attention")
        self.v_proj = nn.Linear(dim, dim, bias=self.qkv_bias)  # values only: the weights come from positions
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(self.proj_drop_rate)
        self.positional = PositionalMap(
            dim,
            self.num_heads,
            num_prefix_tokens=self.num_prefix_tokens,
            pos_type=pos_type,
            pos_grid=pos_grid,
            bias=self.qkv_bias,
        )

    @property
    def qkv(self) -> nn.Linear:
        """Deprecated name of :attr:`v_proj` (the value projection)."""
        warnings.warn("PositionalAttention.qkv is deprecated: use .v_proj", DeprecationWarning, stacklevel=2)
        return self.v_proj

    def forward(
        self, x: torch.Tensor, grid: tuple[int, int], return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self.check_tokens(x, grid)
        v = self.split_heads(self.v_proj(x))
        attn = self.positional(grid, v)  # [1, heads, N, N], shared by the batch
        out = mapped_attention(attn, v, self.attn_drop if self.training else 0.0)
        out = self.proj_drop(self.proj(merge_heads(out)))
        return (out, attn.expand(v.shape[0], -1, -1, -1)) if return_attn else out

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # checkpoints that call the value projection ``qkv``
        for key in [k for k in state_dict if k.startswith(prefix + "qkv.")]:
            state_dict.setdefault(prefix + "v_proj." + key[len(prefix + "qkv.") :], state_dict.pop(key))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@register_attention("gpsa")
class GatedPositionalAttention(SoftmaxAttention):
    """ConViT's GPSA: per-head learnable gate ``lambda_h`` (init ``gating_init``, ConViT's 1) between content
    attention (the softmax attention it extends) and relative positional attention (:class:`RelativePositionalMap`,
    ``positional``), with ConViT's locality initialisation (``local_init``, strength ``locality_strength``).

    ConViT renormalises the gated mix by its row sums; both parts are distributions and the gate weights sum to 1,
    so that division is by 1 and is left out. ``options``: those of :class:`SoftmaxAttention`.
    """

    def __init__(
        self,
        dim: int,
        *,
        locality_strength: float = 1.0,
        local_init: bool = True,
        gating_init: float = 1.0,
        **options: Any,
    ) -> None:
        super().__init__(dim, **options)
        self.positional = RelativePositionalMap(self.num_heads, self.num_prefix_tokens, locality_strength, local_init)
        self.gating = nn.Parameter(torch.full((self.num_heads,), float(gating_init)))
        if local_init:
            self._identity_values()

    @torch.no_grad()
    def _identity_values(self) -> None:
        if self.qkv is not None:
            self.qkv.weight[2 * self.dim :].copy_(torch.eye(self.dim))

    def design_init(self) -> None:
        """Re-apply ConViT's locality initialisation (when ``local_init``): every head attends around its own offset
        (:meth:`RelativePositionalMap.local_init`) and the value projection is the identity, so a fresh layer
        averages each token's neighbourhood. A model calls this after its generic weight initialisation, which would
        otherwise overwrite it."""
        if self.positional.use_local_init:
            self.positional.local_init()
            self._identity_values()

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, bias: SpatialBias | None, *, grid: tuple[int, int], return_attn: bool
    ) -> tuple[Tensor, Tensor | None]:
        gate = torch.sigmoid(self.gating).to(v.dtype)[:, None, None]  # [heads, 1, 1]
        pos = self.positional(grid, v)  # [1, heads, N, N], shared by the batch
        dropout_p = self.attn_drop if self.training else 0.0
        backend = resolve_backend(
            self.backend, self.supported_backends, q, None, dropout_p=dropout_p, return_attn=return_attn, owner="GPSA"
        )
        return blended_attention(
            q, k, v, (pos, gate), backend=backend, scale=self.scale, dropout_p=dropout_p, return_attn=return_attn
        )

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        if prefix + "positional.qk.weight" in state_dict:  # spatialvit 0.1: absolute positional map
            args[-1].append(
                f"{prefix[:-1] or 'GPSA'} holds a GPSA of spatialvit 0.1 (absolute positional map: positional.pos, "
                "positional.qk); GPSA now uses ConViT's relative positional scores, which cannot be derived from it. "
                "Retrain the model (GPSA was not part of the default study)"
            )
            return
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
