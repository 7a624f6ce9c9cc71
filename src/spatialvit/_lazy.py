"""Lazy package attributes (PEP 562): a package names what it exports and from which of its modules, and that
module is imported on first use. This keeps ``import spatialvit`` and the command line's parsing (``--help``) free
of torch; a name is imported the first time a library call or a command needs it."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, modules: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """The module ``__getattr__``, ``__dir__`` and ``__all__`` of ``package``: ``modules`` maps each of its modules
    (relative, ``".perturb"``) to the names it exports, space-separated; a module listed under its own name
    (``".association": "association"``) is exported as the submodule itself."""
    exports = {name: module for module, names in modules.items() for name in names.split()}
    namespace = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(module_name, package)
        value = module if module_name == f".{name}" else getattr(module, name)
        namespace[name] = value  # later look-ups skip __getattr__
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__, sorted(name for name, module in exports.items() if module != f".{name}")


def moved_module(old: str, new: str) -> Callable[[str], Any]:
    """The ``__getattr__`` of a module whose names moved to ``new`` (relative to ``old``'s package): each look-up
    warns (``DeprecationWarning``) and returns the name from its new home."""
    package = old.rpartition(".")[0]

    def __getattr__(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        module = importlib.import_module(new, package)
        value = getattr(module, name)  # AttributeError for names that never lived here
        warnings.warn(f"{old}.{name} moved to {module.__name__}.{name}", DeprecationWarning, stacklevel=2)
        return value

    return __getattr__
