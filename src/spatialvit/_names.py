"""Lookup of names in the package's registries, with a helpful error for unknown names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists close matches. (``str()`` is the plain message.)"""

    def __str__(self) -> str:
        return str(self.args[0])


def unknown_name(kind: str, name: str, choices: Iterable[str], how_to_list: str) -> UnknownNameError:
    """Build the error for ``name`` missing from ``choices``, suggesting the closest names."""
    close = difflib.get_close_matches(name, list(choices), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return UnknownNameError(f"unknown {kind} {name!r}.{hint} {how_to_list}")
