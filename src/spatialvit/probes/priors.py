"""What a ViT's attention is before content: the content-free prior of its bias, and how much a data-dependent
decay varies from image to image.

- :func:`prior_attention_distance`: the mean attention distance of ``softmax(bias)`` alone — every softmax mixer's
  logits ``q k^T`` scaled by 0. For a fixed-decay model this is the locality its Manhattan decay imposes whatever it
  learns; for plain attention it is uniform attention's distance.
- :func:`rate_spread`: the decay rates' variation across images (standard deviation over images divided by the mean,
  averaged over layers, heads and tokens): exactly 0 for fixed decay, above 0 when the rates depend on the image.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..attention.cag import ContextDecay
from ..attention.decay import FixedDecay
from ..attention.softmax import SoftmaxAttention
from ..runtime import split_classifier
from .attention_maps import has_attention_maps, mean_attention_distance


def _mixers(model: nn.Module) -> list[nn.Module]:
    vit = split_classifier(model)[1]
    return [m for block in getattr(vit, "blocks", []) for m in block.modules() if hasattr(m, "check_tokens")]


def has_prior(model: nn.Module) -> bool:
    """Whether every token mixer of the ViT in ``model`` is a softmax mixer (``q k^T * scale + bias``), so that its
    content-free prior is defined."""
    mixers = _mixers(model)
    return has_attention_maps(model) and bool(mixers) and all(isinstance(m, SoftmaxAttention) for m in mixers)


@contextmanager
def content_free(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` with every softmax mixer's logit scale set to 0 (attention = ``softmax(bias)``), restored after."""
    mixers = [m for m in model.modules() if isinstance(m, SoftmaxAttention)]
    scales = [m.scale for m in mixers]
    try:
        for m in mixers:
            m.scale = 0.0
        yield model
    finally:
        for m, s in zip(mixers, scales):
            m.scale = s


@torch.no_grad()
def prior_attention_distance(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Mean attention distance ``[layers, heads]`` in pixels of ``model``'s content-free attention on ``images``
    (pixel space). ``ValueError`` for a model with a mixer that is not a softmax mixer (positional attention,
    GPSA): its attention has no separable prior."""
    if not has_prior(model):
        raise ValueError("the content-free prior needs a ViT whose every mixer is a softmax mixer")
    with content_free(model):
        return mean_attention_distance(model, images)


@torch.no_grad()
def rate_spread(model: nn.Module, images: torch.Tensor) -> float | None:
    """Per decay layer, head and grid token: the standard deviation of its rate across ``images`` divided by the
    mean rate; averaged. ``None`` for a model without Manhattan decay; 0 for fixed (content-free) rates."""
    sources = [m for m in model.modules() if isinstance(m, (FixedDecay, ContextDecay))]
    if not sources or len(images) < 2:
        return None
    rates: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: rates.append(out.rates.float())) for m in sources]
    try:
        model(images)
    finally:
        for h in hooks:
            h.remove()
    spreads = []
    for r in rates:  # [b, heads, H*W]: b == 1 for rates shared by every image
        r = r.expand(len(images), -1, -1)
        spreads.append((r.std(0) / r.mean(0).abs().clamp_min(1e-12)).mean())
    return float(torch.stack(spreads).mean())
