"""A DiT-style class-conditional denoiser whose blocks use any registered token mixer.

Images ``[B, C, H, W]`` are cut into ``p x p`` patches (tokens on the grid ``(H/p, W/p)``), given a fixed 2D
sin-cos position, and run through transformer blocks conditioned on the timestep and the class label through
adaLN-Zero (Peebles & Xie, *Scalable Diffusion Models with Transformers*, 2023): every block regresses a shift, a
scale and a gate for its two branches from the conditioning vector, with the regressor initialised to zero so each
block starts as the identity. A final adaLN layer maps tokens back to patches (unpatchify). Label ``num_classes`` is
the "no class" label used for classifier-free guidance.

Only the token mixer changes between the plain, fixed-decay and SDT denoisers; everything else is shared.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..attention import create_attention
from ..catalog import SIZES
from ..models.layers import Mlp, PatchEmbed, sincos_pos_embed_2d


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: ``x[B, N, C] * (1 + scale[B, 1, C]) + shift[B, 1, C]``."""
    return x * (1 + scale) + shift


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features ``[B, dim]`` of times ``t[B]`` in ``[0, 1]`` (scaled by 1000, as for DDPM steps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = 1000.0 * t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class DiTBlock(nn.Module):
    """``x + gate1 * attn(adaLN(x))``, then ``x + gate2 * mlp(adaLN(x))`` around a token mixer ``attn``; ``x[B, N, C]``,
    condition ``c[B, C]``."""

    def __init__(self, dim: int, attn: nn.Module, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = attn
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c)[:, None].chunk(6, dim=-1)
        x = x + gate1 * self.attn(modulate(self.norm1(x), shift1, scale1), grid)
        return x + gate2 * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """Class-conditional denoiser: ``forward(x[B, C, H, W], t[B], y[B]) -> [B, C, H, W]``.

    Args:
        img_size: side of the (square) images; ``patch_size`` must divide it.
        in_chans: image channels (the output has the same number).
        num_classes: number of classes; label ``num_classes`` means "unconditional" (classifier-free guidance).
        embed_dim, depth, num_heads, mlp_ratio: transformer width, number of blocks, heads, MLP expansion.
        attn_layer: registered token-mixer name (``spatialvit.attention.list_attention()``).
        attn_kwargs: extra keyword arguments for every mixer (e.g. ``{"backend": "reference"}``).
    """

    def __init__(
        self,
        img_size: int = 16,
        patch_size: int = 2,
        in_chans: int = 1,
        num_classes: int = 10,
        embed_dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        attn_layer: str = "softmax",
        attn_kwargs: dict[str, Any] | None = None,
        freq_dim: int = 256,
    ) -> None:
        super().__init__()
        self.config = dict(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=num_classes,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=mlp_ratio,
            attn_layer=attn_layer,
            attn_kwargs=dict(attn_kwargs or {}),
            freq_dim=freq_dim,
        )
        if img_size % patch_size:
            raise ValueError(f"img_size={img_size} is not divisible by patch_size={patch_size}")
        self.img_size, self.patch_size, self.in_chans, self.num_classes = img_size, patch_size, in_chans, num_classes
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.freq_dim = freq_dim
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.register_buffer("pos_embed", sincos_pos_embed_2d(self.grid, embed_dim).flatten(0, 1), persistent=False)
        self.t_embed = nn.Sequential(nn.Linear(freq_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.y_embed = nn.Embedding(num_classes + 1, embed_dim)
        self.blocks = nn.ModuleList(
            DiTBlock(
                embed_dim,
                create_attention(
                    attn_layer,
                    embed_dim,
                    grid=self.grid,
                    num_heads=num_heads,
                    num_prefix_tokens=0,
                    **(attn_kwargs or {}),
                ),
                mlp_ratio,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(embed_dim, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(embed_dim, 2 * embed_dim))
        self.final = nn.Linear(embed_dim, patch_size * patch_size * in_chans)
        self._init_weights()

    def _init_weights(self) -> None:
        # Xavier for our own linear layers; token mixers keep their own initialisation (a decay gate's bias, say).
        mixers = {id(m) for blk in self.blocks for m in blk.attn.modules()}
        for m in self.modules():
            if isinstance(m, nn.Linear) and id(m) not in mixers:
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.y_embed.weight, std=0.02)
        nn.init.normal_(self.t_embed[0].weight, std=0.02)
        nn.init.normal_(self.t_embed[2].weight, std=0.02)
        # adaLN-Zero: every block and the output layer start at zero.
        for lin in [blk.ada[-1] for blk in self.blocks] + [self.final_ada[-1], self.final]:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    @property
    def null_class(self) -> int:
        """The label that asks for an unconditional prediction."""
        return self.num_classes

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens ``[B, H/p * W/p, p*p*C]`` -> images ``[B, C, H, W]``."""
        (gh, gw), p, C = self.grid, self.patch_size, self.in_chans
        x = x.view(x.shape[0], gh, gw, p, p, C)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(x.shape[0], C, gh * p, gw * p)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Noisy images ``x[B, C, H, W]``, times ``t[B]`` in [0, 1], labels ``y[B]`` -> prediction ``[B, C, H, W]``."""
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_chans, self.img_size, self.img_size):
            raise ValueError(f"x must be [B, {self.in_chans}, {self.img_size}, {self.img_size}], got {tuple(x.shape)}")
        if t.shape != (x.shape[0],) or y.shape != (x.shape[0],):
            raise ValueError(f"t and y must be [B={x.shape[0]}], got {tuple(t.shape)} and {tuple(y.shape)}")
        if y.min() < 0 or y.max() > self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes}] ({self.num_classes} = unconditional)")
        tokens, grid = self.patch_embed(x)
        tokens = tokens + self.pos_embed.to(tokens.dtype)
        c = self.t_embed(timestep_embedding(t, self.freq_dim).to(tokens.dtype)) + self.y_embed(y)
        for blk in self.blocks:
            tokens = blk(tokens, c, grid)
        shift, scale = self.final_ada(c)[:, None].chunk(2, dim=-1)
        return self.unpatchify(self.final(modulate(self.norm(tokens), shift, scale)))


def create_dit(size: str = "micro", **kwargs: Any) -> DiT:
    """A :class:`DiT` at one of the ViT sizes (``micro`` 64/4/4, ``tiny`` 192/12/3, ``small`` 384/12/6)."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    return DiT(**{**SIZES[size], **kwargs})
