"""One Vision Transformer whose token mixer is chosen by name from the attention registry.

Every spatial variant of spatialvit is this model with another ``attn_layer``: the rest (patch embedding, pooling,
positional embedding, MLP, stochastic depth) stays identical, so comparisons measure the mixer alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .._text import plural
from ..attention import create_attention
from ..catalog import MIXERS, PATCHES, SIZES, vit_name
from .layers import DropPath, LayerScale, Mlp, PatchEmbed, resample_pos_embed, sincos_pos_embed_2d, trunc_normal_init
from .registry import register_model


class Block(nn.Module):
    """Pre-norm transformer block around a token mixer ``attn`` (any :class:`TokenMixer`): ``x + attn(norm(x))``,
    then ``x + mlp(norm(x))``, with optional layer scale and stochastic depth on both branches."""

    def __init__(
        self,
        dim: int,
        attn: nn.Module,
        *,
        mlp_ratio: float = 4.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init: float | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = attn
        self.ls1 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.ls2 = LayerScale(dim, layer_scale_init) if layer_scale_init else nn.Identity()
        self.drop_path = DropPath(drop_path)

    def forward(
        self, x: torch.Tensor, grid: tuple[int, int], return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """``x[B, N, C]`` on ``grid`` -> ``[B, N, C]`` (and the mixer's attention ``[B, h, N, N]``)."""
        mixed = self.attn(self.norm1(x), grid, return_attn=return_attn)
        mixed, attn = mixed if return_attn else (mixed, None)
        x = x + self.drop_path(self.ls1(mixed))
        x = x + self.drop_path(self.ls2(self.mlp(self.norm2(x))))
        return (x, attn) if return_attn else x


class VisionTransformer(nn.Module):
    """ViT with a pluggable token mixer.

    Args:
        img_size: training input size (int or (H, W)); other sizes raise unless ``dynamic_img_size``.
        patch_size: side of the square patches.
        attn_layer: registered mixer name, or one name per block (e.g. positional attention in the first k layers).
        attn_kwargs: extra keyword arguments for every mixer (e.g. ``{"backend": "reference"}``).
        pos_embed: ``"learned"`` (resampled bicubically for a new grid), ``"sincos"`` (fixed 2D) or ``"none"``.
        global_pool: ``"token"`` (class token) or ``"avg"`` (mean of patch tokens, no class token unless
            ``class_token=True``).
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 32,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 10,
        embed_dim: int = 192,
        depth: int = 12,
        num_heads: int = 3,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        attn_layer: str | Sequence[str] = "softmax",
        attn_kwargs: dict[str, Any] | None = None,
        pos_embed: str = "learned",
        global_pool: str = "token",
        class_token: bool | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        layer_scale_init: float | None = None,
        dynamic_img_size: bool = False,
    ) -> None:
        super().__init__()
        _check_choice("global_pool", global_pool, ("token", "avg"))
        _check_choice("pos_embed", pos_embed, ("learned", "sincos", "none"))
        self.img_size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
        if self.img_size[0] % patch_size or self.img_size[1] % patch_size:
            raise ValueError(f"img_size={self.img_size} is not divisible by patch_size={patch_size}")
        self.patch_size = patch_size
        self.grid = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.global_pool = global_pool
        self.dynamic_img_size = dynamic_img_size
        class_token = global_pool == "token" if class_token is None else class_token
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True")
        self.num_prefix_tokens = int(class_token)
        layers = [attn_layer] * depth if isinstance(attn_layer, str) else list(attn_layer)
        if len(layers) != depth:
            raise ValueError(f"attn_layer lists {plural(len(layers), 'mixer')} for depth={depth}")
        self.attn_layers = layers

        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.pos_embed_type = pos_embed
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.randn(1, *self.grid, embed_dim) * 0.02)
        else:
            self.register_parameter("pos_embed", None)
        self.pos_drop = nn.Dropout(drop_rate)
        mixer_options = dict(
            num_heads=num_heads,
            num_prefix_tokens=self.num_prefix_tokens,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            **(attn_kwargs or {}),
        )
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()  # also under torch.device("meta")
        block = dict(mlp_ratio=mlp_ratio, drop=drop_rate, layer_scale_init=layer_scale_init)
        self.blocks = nn.ModuleList(
            Block(embed_dim, create_attention(m, embed_dim, grid=self.grid, **mixer_options), drop_path=p, **block)
            for m, p in zip(layers, dpr)
        )
        self.norm = nn.LayerNorm(embed_dim)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """timm's truncated-normal init; then the initialisation that is part of a mixer's design (GPSA's locality
        init) comes back, and the class token starts near zero."""
        self.apply(trunc_normal_init)
        for blk in self.blocks:
            if hasattr(blk.attn, "design_init"):
                blk.attn.design_init()
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)

    def _pos_embed(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Add the positional embedding for ``grid`` to patch tokens ``[B, H*W, C]`` and prepend prefix tokens."""
        if self.pos_embed_type == "learned":
            x = x + resample_pos_embed(self.pos_embed, grid).flatten(1, 2)
        elif self.pos_embed_type == "sincos":
            x = x + sincos_pos_embed_2d(grid, self.embed_dim).to(x).flatten(0, 1)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.pos_drop(x)

    def _check_size(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"images must be [B, C, H, W], got shape {tuple(x.shape)}")
        if not self.dynamic_img_size and tuple(x.shape[-2:]) != self.img_size:
            H, W = self.img_size
            raise ValueError(
                f"input images are {x.shape[-2]}x{x.shape[-1]} but the model expects {H}x{W}; "
                f"create it with img_size={x.shape[-2]} or dynamic_img_size=True"
            )

    def forward_features(
        self, x: torch.Tensor, return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Images ``[B, C, H, W]`` -> normalised tokens ``[B, prefix + H/p*W/p, C]`` (and per-block attention)."""
        self._check_size(x)
        x, grid = self.patch_embed(x)
        x = self._pos_embed(x, grid)
        maps = []
        for blk in self.blocks:
            if return_attn:
                x, attn = blk(x, grid, return_attn=True)
                maps.append(attn)
            else:
                x = blk(x, grid)
        x = self.norm(x)
        return (x, maps) if return_attn else x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``[B, N, C]`` -> logits ``[B, num_classes]`` (or pooled features if ``pre_logits``)."""
        x = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix_tokens :].mean(dim=1)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``[B, C, H, W]`` -> logits ``[B, num_classes]``."""
        return self.forward_head(self.forward_features(x))

    @torch.no_grad()
    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Attention weights of every block for images ``x``: a list of ``[B, heads, N, N]`` (slow path)."""
        return self.forward_features(x, return_attn=True)[1]

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        # A checkpoint trained at another resolution: resample its learned grid embedding to ours.
        key = prefix + "pos_embed"
        if self.pos_embed is not None and key in state_dict and state_dict[key].shape != self.pos_embed.shape:
            state_dict[key] = resample_pos_embed(state_dict[key], self.grid)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def register_vit_family(family: str, **defaults: Any) -> None:
    """Register ``vit_{family}_{size}_patch{p}`` (``vit_{size}_patch{p}`` for the empty family) at every size."""
    for size, size_cfg in SIZES.items():
        for patch, patch_cfg in PATCHES.items():
            register_model(
                vit_name(family, size, patch), VisionTransformer, patch_size=patch, **patch_cfg, **size_cfg, **defaults
            )


# The model families: one per mixer of the catalog.
for _entry in MIXERS:
    register_vit_family(_entry.family, attn_layer=_entry.mixer, **_entry.model_defaults)
