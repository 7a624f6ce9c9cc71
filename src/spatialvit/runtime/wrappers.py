"""The classifier of ``[0, 1]`` pixel images: a model behind its data's ``Normalize``, and the pair split again."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..data.base import Normalize


def with_normalize(model: nn.Module, mean: Sequence[float], std: Sequence[float]) -> nn.Sequential:
    """``nn.Sequential(Normalize(mean, std), model)``: a classifier of ``[0, 1]`` pixel images."""
    return nn.Sequential(Normalize(mean, std), model)


def split_classifier(net: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(preprocessing, model)`` of a :func:`with_normalize` classifier; any other module is ``(Identity, net)``."""
    if isinstance(net, nn.Sequential) and len(net) > 1 and isinstance(net[0], Normalize):
        return net[:-1], net[-1]
    return nn.Identity(), net
