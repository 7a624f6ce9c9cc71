"""Four-stage hierarchical backbones: RMT (Fan et al., CVPR 2024) and SDT-H (Mao et al., AAAI 2026).

The published ImageNet numbers of both papers come from this backbone, not from a plain ViT:

- **stem**: four 3x3 convs with BatchNorm, channels ``C/2, C/2, C, C``, strides ``2, 1, 2, 1`` (total stride 4),
  GELU after the first three;
- **four stages**; before stages 2-4 a 3x3 stride-2 conv + BatchNorm halves the grid and widens the channels;
- **block** (pre-norm residual): ``x + dwconv3x3(x)`` (CPE), then ``x + mixer(LN(x))`` with the decay mixer carrying
  RMT's rotary q/k and LePE (5x5 depthwise conv of V), then ``x + ffn(LN(x))`` where the FFN's hidden layer adds a
  3x3 depthwise conv with a residual; optional layer scale; stochastic depth linear over all blocks;
- **head**: Linear to 1024, BatchNorm, Swish, global average pool, Linear to the classes.

RMT uses the fixed Manhattan decay (mixer ``"decay"``), SDT-H the context-aware gate (mixer ``"cag"``); stages
marked ``decomposed`` run the row-then-column form. Per stage ``gamma_h = 1 - 2^-(a + b*h/heads)`` with ``a`` =
``gamma_a`` (2) and ``b`` = ``heads_ranges``. Mixers are built only through
:func:`spatialvit.attention.create_attention`; see ``docs/hierarchical.md`` for what differs from RMT's code.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._text import plural
from ..attention import create_attention
from ..catalog import MIXERS
from .layers import DropPath, LayerScale, trunc_normal_init
from .registry import register_model

PUBLISHED_STEM_STRIDES = (2, 1, 2, 1)  # RMT's stem: total stride 4 (224 px -> a 56x56 grid)
SMALL_INPUT_STEM_STRIDES = (1, 1, 2, 1)  # total stride 2 (32 px -> 16x16, then 8, 4, 2)


def _per_stage(value: Any, n: int, what: str) -> list[Any]:
    """A scalar repeated for ``n`` stages, or a sequence checked to have ``n`` entries."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        return [value] * n
    if len(value) != n:
        raise ValueError(f"{what} lists {plural(len(value), 'value')} for {plural(n, 'stage')}")
    return list(value)


class ConvStem(nn.Module):
    """RMT's stem: ``[B, C_in, H, W]`` -> ``[B, dim, H/s, W/s]`` with ``s = prod(strides)``.

    Four 3x3 convs (with bias) each followed by BatchNorm, channels ``dim/2, dim/2, dim, dim``, GELU after the
    first three.
    """

    def __init__(self, in_chans: int, dim: int, strides: Sequence[int] = PUBLISHED_STEM_STRIDES) -> None:
        super().__init__()
        if len(strides) != 4:
            raise ValueError(f"the stem has four convs: give four strides, got {tuple(strides)}")
        chans = [in_chans, dim // 2, dim // 2, dim, dim]
        layers: list[nn.Module] = []
        for i, stride in enumerate(strides):
            layers += [nn.Conv2d(chans[i], chans[i + 1], 3, stride, 1), nn.BatchNorm2d(chans[i + 1])]
            if i < 3:
                layers.append(nn.GELU())
        self.proj = nn.Sequential(*layers)
        self.strides = tuple(strides)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Patch merging between stages: 3x3 stride-2 conv + BatchNorm, ``[B, C, H, W]`` -> ``[B, C', ceil(H/2), ...]``."""

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(dim, out_dim, 3, 2, 1)
        self.norm = nn.BatchNorm2d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x))


def _tokens_to_map(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """``[B, H*W, C]`` (row-major) -> ``[B, C, H, W]``."""
    return x.transpose(1, 2).unflatten(2, grid)


def _map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H*W, C]`` (row-major)."""
    return x.flatten(2).transpose(1, 2)


class ConvFFN(nn.Module):
    """RMT's FFN: ``fc2(h + dwconv3x3(h))`` with ``h = GELU(fc1(x))``, on tokens ``[B, H*W, C]`` of a grid."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        h = self.drop(self.act(self.fc1(x)))
        h = h + _map_to_tokens(self.dwconv(_tokens_to_map(h, grid)))
        return self.drop(self.fc2(h))


class HierarchicalBlock(nn.Module):
    """``x + CPE(x)``; ``x + ls1(mixer(LN(x)))``; ``x + ls2(ffn(LN(x)))`` (stochastic depth on the last two)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        attn_layer: str,
        attn_kwargs: dict[str, Any],
        mlp_ratio: float,
        drop_path: float = 0.0,
        layer_scale_init: float | None = None,
        drop: float = 0.0,
    ) -> None:
        super().__init__()
        self.cpe = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = create_attention(attn_layer, dim, num_heads=num_heads, num_prefix_tokens=0, **attn_kwargs)
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.ffn = ConvFFN(dim, int(dim * mlp_ratio), drop)
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Tokens ``[B, H*W, C]`` of ``grid`` -> ``[B, H*W, C]``."""
        x = x + _map_to_tokens(self.cpe(_tokens_to_map(x, grid)))
        x = x + self.drop_path(self.ls1(self.attn(self.norm1(x), grid=grid)))
        return x + self.drop_path(self.ls2(self.ffn(self.norm2(x), grid)))


class Stage(nn.Module):
    """Optional downsampling (stages 2-4), then blocks: ``[B, C_in, H, W]`` -> ``[B, C, H', W']``."""

    def __init__(self, downsample: nn.Module | None, blocks: list[HierarchicalBlock]) -> None:
        super().__init__()
        self.downsample = downsample if downsample is not None else nn.Identity()
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        grid = (x.shape[-2], x.shape[-1])
        t = _map_to_tokens(x)
        for blk in self.blocks:
            t = blk(t, grid)
        return _tokens_to_map(t, grid)


class HierarchicalViT(nn.Module):
    """RMT's four-stage backbone with a pluggable decay mixer (``"decay"``: RMT, ``"cag"``: SDT-H).

    Args:
        img_size: the input size the model is meant for (recorded; any size works: every stage is convolutional or
            attends over whatever grid it gets, each stride-2 step rounds up).
        embed_dims, depths, num_heads: per stage.
        heads_ranges, gamma_a: decay schedule per stage, ``gamma_h = 1 - 2^-(a + range*h/heads)`` with ``a`` =
            ``gamma_a`` (``init_values``: its deprecated name), for the mixers that take one (``decay``, ``cag``).
        mlp_ratios: FFN hidden width per stage, as a multiple of the stage's width.
        decomposed: per stage, run the row-then-column form of the mixer (RMT's "chunkwise" stages).
        layer_scales: per stage, use layer scale initialised to ``layer_scale_init``.
        drop_path_rate: stochastic depth of the last block (linear from 0 over all blocks).
        attn_layer: registered mixer name.
        attn_kwargs: extra keyword arguments for every mixer (e.g. ``{"backend": "sdpa"}``, ``{"alpha": 2.0}``);
            RMT's ``rope=True`` and ``lepe_kernel=5`` are the defaults they override.
        stem_strides: strides of the four stem convs (RMT: ``(2, 1, 2, 1)``).
        projection: width of the head's projection before the classifier (RMT: 1024).
    """

    def __init__(
        self,
        img_size: int | Sequence[int] = 224,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dims: Sequence[int] = (64, 128, 256, 512),
        depths: Sequence[int] = (2, 2, 8, 2),
        num_heads: Sequence[int] = (4, 4, 8, 16),
        heads_ranges: Sequence[float] | float = (4, 4, 6, 6),
        gamma_a: Sequence[float] | float = 2.0,
        mlp_ratios: Sequence[float] | float = 3.0,
        decomposed: Sequence[bool] | bool = (True, True, False, False),
        layer_scales: Sequence[bool] | bool = False,
        layer_scale_init: float = 1e-6,
        drop_path_rate: float = 0.1,
        drop_rate: float = 0.0,
        attn_layer: str = "decay",
        attn_kwargs: dict[str, Any] | None = None,
        stem_strides: Sequence[int] = PUBLISHED_STEM_STRIDES,
        projection: int = 1024,
        init_values: Sequence[float] | float | None = None,
    ) -> None:
        super().__init__()
        if init_values is not None:
            warnings.warn("HierarchicalViT(init_values=...) is deprecated: use gamma_a=...", DeprecationWarning, 2)
            gamma_a = init_values
        n = len(embed_dims)
        depths, num_heads = _per_stage(depths, n, "depths"), _per_stage(num_heads, n, "num_heads")
        heads_ranges = _per_stage(heads_ranges, n, "heads_ranges")
        gamma_a = _per_stage(gamma_a, n, "gamma_a")
        mlp_ratios = _per_stage(mlp_ratios, n, "mlp_ratios")
        decomposed = [bool(d) for d in _per_stage(decomposed, n, "decomposed")]
        layer_scales = [bool(s) for s in _per_stage(layer_scales, n, "layer_scales")]
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        if len(self.img_size) != 2 or min(self.img_size) < 1:
            raise ValueError(f"img_size must be a positive int or (H, W), got {img_size!r}")
        self.in_chans, self.num_classes, self.attn_layer = in_chans, num_classes, attn_layer
        self.embed_dims, self.depths, self.num_heads = tuple(embed_dims), tuple(depths), tuple(num_heads)
        self.heads_ranges, self.gamma_a, self.decomposed = tuple(heads_ranges), tuple(gamma_a), tuple(decomposed)
        self.num_features = embed_dims[-1]

        self.stem = ConvStem(in_chans, embed_dims[0], stem_strides)
        dpr = torch.linspace(0, drop_path_rate, sum(depths), device="cpu").tolist()
        extra = {"rope": True, "lepe_kernel": 5, **(attn_kwargs or {})}
        stage_kwargs = [self._stage_options(extra, gamma_a[i], heads_ranges[i], decomposed[i]) for i in range(n)]
        stages, start = [], 0
        for i in range(n):
            blocks = [
                HierarchicalBlock(
                    embed_dims[i],
                    num_heads[i],
                    attn_layer,
                    attn_kwargs=stage_kwargs[i],
                    mlp_ratio=mlp_ratios[i],
                    drop_path=dpr[start + j],
                    layer_scale_init=layer_scale_init if layer_scales[i] else None,
                    drop=drop_rate,
                )
                for j in range(depths[i])
            ]
            start += depths[i]
            down = Downsample(embed_dims[i - 1], embed_dims[i]) if i > 0 else None
            stages.append(Stage(down, blocks))
        self.stages = nn.ModuleList(stages)
        self.proj = nn.Linear(embed_dims[-1], projection)
        self.proj_norm = nn.BatchNorm2d(projection)
        self.act = nn.SiLU()  # Swish
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(projection, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(trunc_normal_init)  # as RMT: every Linear trunc-normal(0.02) with zero bias, LayerNorm 1/0

    def _stage_options(self, extra: dict[str, Any], gamma_a: float, gamma_b: float, decomposed: bool) -> dict[str, Any]:
        """The mixer options of one stage: ``extra``, and for a mixer with RMT's decay schedule
        (:data:`~spatialvit.catalog.MIXERS`) the stage's ``gamma_a``, ``gamma_b`` and ``decomposed`` form."""
        if not any(m.mixer == self.attn_layer and m.decay_schedule for m in MIXERS):
            return dict(extra)
        return {
            **extra,
            "gamma_a": float(gamma_a),
            "gamma_b": float(gamma_b),
            **({"decomposed": True} if decomposed else {}),
        }

    @property
    def init_values(self) -> tuple[float, ...]:
        """Deprecated name of :attr:`gamma_a` (the decay schedule's ``a`` per stage)."""
        warnings.warn("HierarchicalViT.init_values is deprecated: use .gamma_a", DeprecationWarning, stacklevel=2)
        return self.gamma_a

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> the last stage's feature map ``[B, C_last, H/32, W/32]`` (published stem)."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(f"images must be [B, {self.in_chans}, H, W], got {tuple(x.shape)}")
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature map ``[B, C, H, W]`` -> logits (``Linear, BatchNorm, Swish, average pool, Linear``)."""
        x = self.proj(x.permute(0, 2, 3, 1))  # [B, H, W, P]
        x = self.act(self.proj_norm(x.permute(0, 3, 1, 2)))  # [B, P, H, W]
        x = self.head_drop(x.mean(dim=(2, 3)))
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> logits ``[B, num_classes]``."""
        return self.forward_head(self.forward_features(x))

    def stage_grids(self, img_size: Sequence[int] | None = None) -> list[tuple[int, int]]:
        """Token grid of each stage for an input of ``img_size`` (default: the model's)."""
        h, w = tuple(img_size or self.img_size)
        for s in self.stem.strides:  # a 3x3 conv with padding 1 and stride s gives ceil(n / s)
            h, w = -(-h // s), -(-w // s)
        grids = []
        for i in range(len(self.stages)):
            if i > 0:
                h, w = -(-h // 2), -(-w // 2)
            grids.append((h, w))
        return grids


# Published configurations (RMT's classfication_release/RMT.py: RMT_T3, RMT_S, RMT_M2 = RMT-B), one row each:
# embed_dims, depths, num_heads, heads_ranges, mlp_ratios, drop_path_rate, then per stage 1/0: decomposed, layer
# scale.
# "micro" is not published: a tiny member of the family that trains in seconds on a CPU (tests, demos, 32x32).
_TABLE = {
    "t": ((64, 128, 256, 512), (2, 2, 8, 2), (4, 4, 8, 16), (4, 4, 6, 6), (3, 3, 3, 3), 0.1, "1100", "0000"),
    "s": ((64, 128, 256, 512), (3, 4, 18, 4), (4, 4, 8, 16), (4, 4, 6, 6), (4, 4, 3, 3), 0.15, "1110", "0000"),
    "b": ((80, 160, 320, 512), (4, 8, 25, 8), (5, 5, 10, 16), (5, 5, 6, 6), (4, 4, 3, 3), 0.4, "1110", "0011"),
    "micro": ((32, 64, 96, 128), (1, 1, 2, 1), (2, 2, 4, 4), (4, 4, 6, 6), (3, 3, 3, 3), 0.0, "1100", "0000"),
}  # fmt: skip
_KEYS = ("embed_dims", "depths", "num_heads", "heads_ranges", "mlp_ratios", "drop_path_rate", "decomposed")
CONFIGS: dict[str, dict[str, Any]] = {
    size: {
        **dict(zip(_KEYS, row[:-1])),
        "decomposed": tuple(flag == "1" for flag in row[6]),
        "layer_scales": tuple(flag == "1" for flag in row[7]),
    }
    for size, row in _TABLE.items()
}
CONFIGS["b"]["layer_scale_init"] = 1e-6
CONFIGS["micro"]["projection"] = 256
PUBLISHED = dict(img_size=224, num_classes=1000, stem_strides=PUBLISHED_STEM_STRIDES)
SMALL_INPUT = dict(img_size=32, num_classes=10, stem_strides=SMALL_INPUT_STEM_STRIDES)
# family -> mixer and what it changes in the configurations above. SDT-H decomposes stages 1-2 at every size
# (stages 3-4 full 2-D), where RMT-S/B also decompose stage 3.
FAMILIES: dict[str, dict[str, Any]] = {
    "rmt": dict(attn_layer="decay"),
    "sdt": dict(attn_layer="cag", decomposed=(True, True, False, False)),
}

for _family, _changes in FAMILIES.items():
    for _size in ("t", "s", "b", "micro"):
        _cfg = {**CONFIGS[_size], **_changes}
        if _size == "micro":
            register_model(f"{_family}_micro", HierarchicalViT, **{**SMALL_INPUT, **_cfg})
            continue
        register_model(f"{_family}_{_size}", HierarchicalViT, **{**PUBLISHED, **_cfg})
        register_model(f"{_family}_{_size}_cifar", HierarchicalViT, **{**SMALL_INPUT, **_cfg})
