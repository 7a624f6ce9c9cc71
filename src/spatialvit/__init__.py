"""spatialvit: spatial structure in Vision Transformers — measure it, fix it in the architecture, understand it.

``create_model`` and ``list_models`` are imported (with torch and the model registry) on first use, so that
``import spatialvit`` and ``spatialvit --help`` stay fast."""

from ._lazy import lazy_exports

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models"]
__getattr__, __dir__ = lazy_exports(__name__, {"create_model": ".models", "list_models": ".models"})
