"""Name -> token-mixer class registry, so a ViT picks its attention by name and a new mechanism is one new file."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from .._names import unknown_name
from .base import TokenMixer

_ATTENTION: dict[str, type[TokenMixer]] = {}
T = TypeVar("T", bound=type[TokenMixer])


def register_attention(name: str) -> Callable[[T], T]:
    """Class decorator: make a :class:`TokenMixer` available as ``create_attention(name, ...)``."""

    def wrap(cls: T) -> T:
        if name in _ATTENTION:
            raise ValueError(f"attention {name!r} is already registered")
        _ATTENTION[name] = cls
        return cls

    return wrap


def get_attention(name: str) -> type[TokenMixer]:
    """The class registered under ``name``; unknown names raise a ``KeyError`` naming close matches."""
    if name not in _ATTENTION:
        raise unknown_name("attention", name, _ATTENTION, f"Available: {', '.join(sorted(_ATTENTION))}.")
    return _ATTENTION[name]


def create_attention(name: str, dim: int, grid: tuple[int, int] | None = None, **kwargs: Any) -> TokenMixer:
    """Instantiate the token mixer ``name`` for width ``dim``.

    ``grid`` is the patch grid the mixer is built for: mixers with grid-shaped parameters (a ``pos_grid``
    argument, e.g. learned positional maps) are sized from it unless ``pos_grid`` is given explicitly.
    """
    cls = get_attention(name)
    if grid is not None and "pos_grid" in inspect.signature(cls).parameters:
        kwargs.setdefault("pos_grid", tuple(grid))
    return cls(dim, **kwargs)


def list_attention() -> list[str]:
    """Sorted names of all registered token mixers."""
    return sorted(_ATTENTION)
