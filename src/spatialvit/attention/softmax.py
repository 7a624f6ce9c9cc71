"""Multi-head attention ``softmax(q k^T * scale + bias) v``, composed of parts: the one attention module.

Plain ViT attention is :class:`SoftmaxAttention` with its defaults. Every spatial variant is the same module with
other parts, passed by keyword:

- the *projection* part: q, k, v from one ``C -> 3C`` linear layer (``qkv``), or, given ``grid_qkv``, grid tokens'
  q, k, v from that part instead, ``(grid tokens [B, H*W, C], grid) -> [B, H*W, 3C]`` (a convolution over the
  grid, :mod:`.conv_qkv`), with the linear layer kept for prefix tokens only; built as ``grid_qkv(dim, bias=...)``.
- ``bias``: the *bias source*, built as ``bias(dim, num_heads)``, a module ``(x[B, N, C], grid, num_prefix) ->
  SpatialBias`` (``None``: no bias; the contract is :mod:`.bias`): fixed Manhattan rates (:mod:`.decay`), rates
  gated by content (:mod:`.cag`), a learned relative-position table (:mod:`.relpos`). It names the kernels that
  compute its bias exactly (``backends``) and itself in errors (``what``).
- ``rope``, ``lepe_kernel``: RMT's block extras, for any variant: rotary q/k over the grid, and a depthwise conv of
  V added to the output.

The kernel of each call is chosen by :mod:`.backend` alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from .backend import PLAIN_BACKENDS, biased_attention, check_backend, resolve_backend
from .base import TokenMixer, merge_heads
from .bias import SpatialBias
from .posenc import rope_2d
from .registry import register_attention


@register_attention("softmax")
class SoftmaxAttention(TokenMixer):
    """``softmax(q k^T * scale + bias) v`` with q/k/v from the projection part and the bias from the ``bias`` part.

    ``options``: those every mixer takes (:class:`TokenMixer`). ``backend``: ``'auto'`` (fastest exact path for the
    call) or a kernel the bias allows (:mod:`.backend`); attention maps (``return_attn=True``) always come from the
    materialised reference.
    """

    # Keys of older checkpoints -> where they live now (None: dropped): the bias part was called ``decay``.
    legacy_keys: ClassVar[dict[str, str | None]] = {"decay.": "bias."}

    def __init__(
        self,
        dim: int,
        *,
        grid_qkv: Callable[..., nn.Module] | None = None,
        bias: Callable[..., nn.Module] | None = None,
        rope: bool = False,
        lepe_kernel: int = 0,
        decay: Callable[..., nn.Module] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(dim, **options)
        if decay is not None:
            warnings.warn("SoftmaxAttention(decay=...) is deprecated: use bias=...", DeprecationWarning, stacklevel=2)
            if bias is not None:
                raise TypeError("SoftmaxAttention takes bias= or the deprecated decay=, not both")
            bias = decay
        if rope and self.head_dim % 4:
            raise ValueError(f"rope needs head_dim divisible by 4, got {self.head_dim}")
        if lepe_kernel < 0 or (lepe_kernel and lepe_kernel % 2 == 0):
            raise ValueError(f"lepe_kernel must be 0 (off) or a positive odd number, got {lepe_kernel}")
        self.bias = bias(dim, self.num_heads) if bias is not None else None
        what = self.bias.what if self.bias is not None else "plain attention"
        self.supported_backends = self.bias.backends if self.bias is not None else PLAIN_BACKENDS
        self.backend = check_backend(self.backend, self.supported_backends, what)
        # The output projection is built before the linear projection and registered after it, so that a seed gives
        # the same initial weights (and parameter order) as in spatialvit 0.1, where it was built second.
        proj = nn.Linear(dim, dim)
        linear = grid_qkv is None or self.num_prefix_tokens > 0
        self.qkv = nn.Linear(dim, 3 * dim, bias=self.qkv_bias) if linear else None
        self.proj = proj
        self.proj_drop = nn.Dropout(self.proj_drop_rate)
        self.grid_qkv = grid_qkv(dim, bias=self.qkv_bias) if grid_qkv is not None else None
        self.rope = rope
        self.lepe = nn.Conv2d(dim, dim, lepe_kernel, padding=lepe_kernel // 2, groups=dim) if lepe_kernel else None

    def project(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens ``[B, N, C]`` -> ``q, k, v [B, heads, N, head_dim]`` (grid tokens' q/k rotated with ``rope``)."""
        if self.grid_qkv is None:
            qkv = self.qkv(x)
        else:
            P = self.num_prefix_tokens
            qkv = self.grid_qkv(x[:, P:], grid)
            if P:
                qkv = torch.cat([self.qkv(x[:, :P]), qkv], dim=1)
        q, k, v = (self.split_heads(t) for t in qkv.chunk(3, dim=-1))
        if self.rope:
            q, k = (rope_2d(t, grid, self.num_prefix_tokens) for t in (q, k))
        return q, k, v

    @property
    def decay(self) -> nn.Module | None:
        """Deprecated name of :attr:`bias` (the bias part)."""
        warnings.warn("SoftmaxAttention.decay is deprecated: use .bias", DeprecationWarning, stacklevel=2)
        return self.bias

    def spatial_bias(self, x: torch.Tensor, grid: tuple[int, int]) -> SpatialBias | None:
        """The additive logit bias of this mixer for tokens ``x[B, N, C]`` (``None``: plain attention)."""
        return None if self.bias is None else self.bias(x, grid, self.num_prefix_tokens)

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, bias: SpatialBias | None, *, grid: tuple[int, int], return_attn: bool
    ) -> tuple[Tensor, Tensor | None]:
        """``softmax(q k^T * scale + bias) v`` ``[B, heads, N, head_dim]`` on ``grid`` (and the weights for
        ``return_attn``)."""
        dropout_p = self.attn_drop if self.training else 0.0
        owner = type(self).__name__
        backend = resolve_backend(
            self.backend, self.supported_backends, q, bias, dropout_p=dropout_p, return_attn=return_attn, owner=owner
        )
        return biased_attention(q, k, v, bias, backend=backend, scale=self.scale, dropout_p=dropout_p, owner=owner)

    def forward(
        self, x: torch.Tensor, grid: tuple[int, int], return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self.check_tokens(x, grid)
        q, k, v = self.project(x, grid)
        out, attn = self.attend(q, k, v, self.spatial_bias(x, grid), grid=grid, return_attn=return_attn)
        if self.lepe is not None:
            out = out + self._lepe(v, grid)
        out = self.proj_drop(self.proj(merge_heads(out)))
        return (out, attn) if return_attn else out

    def _lepe(self, v: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Depthwise conv of the grid tokens' values, ``[B, h, N, d]`` (zero for prefix tokens)."""
        B, h, N, d = v.shape
        P = self.num_prefix_tokens
        fmap = v[:, :, P:].transpose(1, 2).reshape(B, N - P, h * d).transpose(1, 2).unflatten(2, grid)
        out = self.lepe(fmap).flatten(2).view(B, h, d, N - P).transpose(2, 3)
        return nn.functional.pad(out, (0, 0, P, 0))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Checkpoints of spatialvit 0.1 stored some parameters under other names: move them (or drop dead ones).
        for old, new in self.legacy_keys.items():
            for key in [k for k in state_dict if k.startswith(prefix + old)]:
                value = state_dict.pop(key)
                target = None if new is None else prefix + new + key[len(prefix + old) :]
                if target is not None and target not in state_dict:
                    state_dict[target] = value
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
