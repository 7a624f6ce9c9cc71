"""Model registry: ``create_model(name, **overrides)`` and ``list_models(pattern)``."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from typing import Any

from torch import nn

from .._names import unknown_name

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_DEFAULTS: dict[str, dict[str, Any]] = {}


def register_model(name: str, builder: Callable[..., nn.Module], **defaults: Any) -> None:
    """Register ``builder(**defaults, **overrides)`` under ``name``."""
    if name in _MODELS:
        raise ValueError(f"model {name!r} is already registered")
    _MODELS[name] = builder
    _DEFAULTS[name] = defaults


def model_defaults(name: str) -> dict[str, Any]:
    """The keyword arguments a registered model is built with before overrides."""
    _check_name(name)
    return dict(_DEFAULTS[name])


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the registered model ``name``; keyword overrides replace its defaults (e.g. ``num_classes=10``)."""
    _check_name(name)
    return _MODELS[name](**{**_DEFAULTS[name], **overrides})


def sizes_that_build(name: str, near: int, count: int = 2, **overrides: Any) -> list[int]:
    """Square image sizes close to ``near`` (up to ``count`` below and above it, within 64 px) for which ``name``
    builds with ``overrides`` (shapes only, on the meta device: no memory, no initialisation)."""
    import torch

    def builds(size: int) -> bool:
        try:
            with torch.device("meta"):
                create_model(name, **{**overrides, "img_size": [size, size]})
        except (ValueError, TypeError, AssertionError, RuntimeError):
            return False
        return True

    below = [n for n in range(near - 1, max(near - 65, 0), -1) if builds(n)][:count]
    above = [n for n in range(near + 1, near + 65) if builds(n)][:count]
    return sorted(below) + above


def list_models(pattern: str = "*") -> list[str]:
    """Sorted registered names matching ``pattern``: a shell-style pattern (``'vit_*_patch4'``), or, without the
    glob characters ``*?[``, a part of the name (``'sdt'`` lists ``sdt_b``, ``vit_sdt_micro_patch4``, ...)."""
    if not any(c in pattern for c in "*?["):
        return sorted(n for n in _MODELS if pattern.lower() in n)
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


# A registered name is FAMILY[_SIZE][_patchP][_cifar]: vit_sdt_micro_patch4, sdt_b_cifar, resnet_small, resnet18.
_VARIANT = re.compile(r"(_(micro|tiny|small|base|large|t|s|b|l))?(_patch\d+)?(_cifar)?$")


def model_family(name: str) -> str:
    """The family of a registered name: the name without its size, patch and small-input suffixes
    (``vit_sdt_micro_patch4`` -> ``vit_sdt``, ``sdt_b_cifar`` -> ``sdt``, ``resnet_small`` -> ``resnet``)."""
    return _VARIANT.sub("", name) or name


def list_families() -> list[str]:
    """Sorted families of the registered models (:func:`model_family`)."""
    return sorted({model_family(n) for n in _MODELS})


def _check_name(name: str) -> None:
    if name not in _MODELS:
        raise unknown_name("model", name, _MODELS, "Run `spatialvit models` to list all models.")
