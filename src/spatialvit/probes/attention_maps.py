"""Attention maps of a model, and the mean attention distance per layer and head.

Works on any model that exposes ``attention_maps(images) -> list of [B, heads, N, N]`` (every spatialvit ViT
does) together with ``patch_size`` and ``num_prefix_tokens``. Models wrapped as ``nn.Sequential(Normalize, model)``
are split with :func:`spatialvit.runtime.split_classifier`, and the normalisation is applied first.
"""

from __future__ import annotations

import torch
from torch import nn

from ..runtime import split_classifier


def has_attention_maps(model: nn.Module) -> bool:
    """True when the (unwrapped) model can return its attention maps."""
    return callable(getattr(split_classifier(model)[1], "attention_maps", None))


@torch.no_grad()
def grid_attention_maps(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Per block, the attention among grid tokens ``[B, heads, H*W, H*W]`` for ``images`` in pixel space.

    Prefix tokens (class token) are dropped and each query row renormalised over the grid keys.
    """
    pre, vit = split_classifier(model)
    if not has_attention_maps(model):
        raise ValueError(f"{type(vit).__name__} does not expose attention_maps(images)")
    p = vit.num_prefix_tokens
    maps = []
    for attn in vit.attention_maps(pre(images)):
        a = attn[:, :, p:, p:].float()
        maps.append(a / a.sum(-1, keepdim=True).clamp_min(1e-12))
    return maps


def token_distances(grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """Euclidean distance in pixels between the centres of grid tokens: ``[H*W, H*W]``."""
    H, W = grid
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    centres = torch.stack([ys.flatten(), xs.flatten()], -1).float() * patch_size
    return torch.cdist(centres, centres)


@torch.no_grad()
def mean_attention_distance(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Mean attention distance ``[layers, heads]`` in pixels (Dosovitskiy et al. 2021).

    For each query, the attention-weighted mean distance to the keys, averaged over queries and images; grid
    tokens only (see :func:`grid_attention_maps`).
    """
    maps = grid_attention_maps(model, images)
    vit = split_classifier(model)[1]
    grid = tuple(s // vit.patch_size for s in images.shape[-2:])
    dist = token_distances(grid, vit.patch_size).to(images.device)
    return torch.stack([(a * dist).sum(-1).mean(dim=(0, 2)) for a in maps]).cpu()
