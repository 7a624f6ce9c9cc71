"""Patch association: does a learned attention matrix attend within the true groups of patches?

Works on any attention matrix ``A[D, D]`` (rows = queries, summing to 1): the simplified model's ``softmax(Q)``, or a
ViT block's map via :func:`vit_attention_matrix` (the model's ``attention_maps(x)`` hook, prefix tokens stripped,
heads and images averaged, the token grid pooled to the data's patch grid).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .._text import plural
from .config import CLUSTER_METHODS


def _check(A: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    A, groups = torch.as_tensor(A).detach().double().cpu(), torch.as_tensor(groups).long().cpu()
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square [D, D] attention matrix, got {tuple(A.shape)}")
    if groups.shape != (A.shape[0],):
        raise ValueError(f"groups must be [D={A.shape[0]}] group ids, got {tuple(groups.shape)}")
    return A, groups


def same_group(groups: torch.Tensor) -> torch.Tensor:
    """``[D, D]`` bool: patches i and j share a group."""
    groups = torch.as_tensor(groups)
    return groups[:, None] == groups[None, :]


def within_group_mass(A: torch.Tensor, groups: torch.Tensor) -> float:
    """Mean over queries i of ``sum_{j in S(i)} A_ij`` (self included): 1 = perfect, ``C/D`` = uniform attention."""
    A, groups = _check(A, groups)
    return float((A * same_group(groups)).sum(1).mean())


def association_auc(A: torch.Tensor, groups: torch.Tensor) -> float:
    """Probability that a same-group pair ``A_ij`` outranks a different-group pair (off-diagonal pairs; ties 1/2)."""
    from sklearn.metrics import roc_auc_score

    A, groups = _check(A, groups)
    off = ~torch.eye(len(groups), dtype=torch.bool)
    target = same_group(groups)[off].numpy()
    if target.all() or not target.any():
        raise ValueError("association AUC needs both same-group and different-group pairs")
    return float(roc_auc_score(target, A[off].numpy()))


def top_c_precision(A: torch.Tensor, groups: torch.Tensor, exclude_self: bool = False) -> float:
    """Mean over i of the fraction of i's ``C`` largest entries that lie in i's own group of ``C`` patches
    (``exclude_self``: the ``C - 1`` largest off-diagonal entries against the ``C - 1`` other group members)."""
    A, groups = _check(A, groups)
    same = same_group(groups)
    if exclude_self:
        eye = torch.eye(len(groups), dtype=torch.bool)
        A, same = A.masked_fill(eye, -float("inf")), same & ~eye
    sizes = same.sum(1)
    if sizes.min() < 1:
        raise ValueError("top-C precision needs groups of at least 2 patches when exclude_self=True")
    order = A.argsort(dim=1, descending=True)
    ranked_same = same.gather(1, order)  # same-group flags in decreasing attention order
    rank = torch.arange(len(groups))[None, :]
    hits = (ranked_same & (rank < sizes[:, None])).sum(1)
    return float((hits.double() / sizes).mean())


def recover_partition(A: torch.Tensor, num_groups: int, method: str = "spectral", seed: int = 0) -> torch.Tensor:
    """Cluster the symmetrised attention ``(A + A^T) / 2`` into ``num_groups`` clusters: ``[D]`` cluster ids."""
    from sklearn.cluster import AgglomerativeClustering, SpectralClustering

    A = torch.as_tensor(A).detach().double().cpu()
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a square [D, D] attention matrix, got {tuple(A.shape)}")
    if not 1 <= num_groups <= A.shape[0]:
        raise ValueError(f"num_groups must be in 1..{A.shape[0]}, got {num_groups}")
    S = ((A + A.T) / 2).clamp_min(0).numpy()
    if method == "spectral":
        labels = SpectralClustering(num_groups, affinity="precomputed", random_state=seed).fit_predict(S + 1e-12)
    elif method == "agglomerative":
        dist = S.max() - S
        np.fill_diagonal(dist, 0.0)
        labels = AgglomerativeClustering(num_groups, metric="precomputed", linkage="average").fit_predict(dist)
    else:
        raise ValueError(f"method must be one of {CLUSTER_METHODS}, got {method!r}")
    return torch.from_numpy(labels).long()


def adjusted_rand(pred: torch.Tensor, groups: torch.Tensor) -> float:
    """Adjusted Rand index of a recovered partition against the truth (1 = identical, ~0 = chance)."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(torch.as_tensor(groups).numpy(), torch.as_tensor(pred).numpy()))


def association_report(
    A: torch.Tensor, groups: torch.Tensor, method: str | None = "spectral", exclude_self: bool = False
) -> dict[str, float]:
    """Every metric of one ``A[D, D]``: ``mass``, ``chance_mass`` (C/D), ``auc``, ``top_c`` and, unless
    ``method`` is None, ``ari`` of the partition recovered by that clustering method."""
    A, groups = _check(A, groups)
    num_groups = int(groups.unique().numel())
    row = {
        "mass": within_group_mass(A, groups),
        "chance_mass": float(same_group(groups).sum(1).double().mean() / len(groups)),
        "auc": association_auc(A, groups),
        "top_c": top_c_precision(A, groups, exclude_self=exclude_self),
    }
    if method is not None:
        row["ari"] = adjusted_rand(recover_partition(A, num_groups, method), groups)
    return row


def pool_to_grid(A: torch.Tensor, token_grid: tuple[int, int], data_grid: tuple[int, int]) -> torch.Tensor:
    """Token attention ``[..., h*w, h*w]`` -> data-patch attention ``[..., H*W, H*W]`` when each data patch covers an
    ``(h/H) x (w/W)`` block of tokens: queries averaged, keys summed within a block (rows still sum to 1)."""
    (h, w), (H, W) = token_grid, data_grid
    if h % H or w % W:
        raise ValueError(f"token grid {token_grid} is not a multiple of the data grid {data_grid}")
    if A.shape[-1] != h * w or A.shape[-2] != h * w:
        raise ValueError(f"A must be [..., {h * w}, {h * w}] for token grid {token_grid}, got {tuple(A.shape)}")
    if (h, w) == (H, W):
        return A
    # Map every token (row-major on h x w) to its data patch (row-major on H x W).
    rows = torch.arange(h).div(h // H, rounding_mode="floor")
    cols = torch.arange(w).div(w // W, rounding_mode="floor")
    owner = (rows[:, None] * W + cols[None, :]).flatten()
    member = torch.nn.functional.one_hot(owner, H * W).to(A.dtype)  # [h*w, H*W]
    return member.T @ A @ member / member.sum(0)[:, None]


@torch.no_grad()
def vit_attention_matrix(
    model: nn.Module,
    images: torch.Tensor,
    block: int,
    data_grid: tuple[int, int] | None = None,
    head: int | None = None,
    num_prefix_tokens: int | None = None,
) -> torch.Tensor:
    """Attention of one block of a ViT among patch positions: ``[D, D]`` on ``data_grid``.

    Uses the documented hook ``model.attention_maps(images) -> list of [B, heads, N, N]``; strips the model's
    ``num_prefix_tokens`` (attribute, or the argument), averages images and heads (or takes ``head``), renormalises
    rows over the grid tokens, and pools the token grid (image size / ``model.patch_size``) to ``data_grid``
    (default: the token grid).
    """
    if not hasattr(model, "attention_maps"):
        raise ValueError("model must provide attention_maps(x) -> list of [B, heads, N, N] per block")
    was_training = model.training
    model.eval()
    maps = model.attention_maps(images)
    model.train(was_training)
    if not -len(maps) <= block < len(maps):
        raise ValueError(f"block must index one of the model's {plural(len(maps), 'block')}, got {block}")
    attn = maps[block].double()
    prefix = getattr(model, "num_prefix_tokens", 0) if num_prefix_tokens is None else num_prefix_tokens
    attn = attn[..., prefix:, prefix:]
    if head is not None:
        if not -attn.shape[1] <= head < attn.shape[1]:
            raise ValueError(f"head must index one of {plural(attn.shape[1], 'head')}, got {head}")
        attn = attn[:, head]
    else:
        attn = attn.mean(1)
    A = attn.mean(0)
    A = A / A.sum(-1, keepdim=True).clamp_min(1e-12)  # mass left on prefix tokens is dropped
    patch = getattr(model, "patch_size", None)
    if patch is None:
        raise ValueError("model must have a patch_size attribute to place its tokens on a grid")
    token_grid = (images.shape[-2] // patch, images.shape[-1] // patch)
    return pool_to_grid(A, token_grid, tuple(data_grid or token_grid))
