"""spatialvit: spatial structure in Vision Transformers — measure it, fix it in the architecture, understand it.

``create_model`` and ``list_models`` are imported (with torch and the model registry) on first use, so that
``import spatialvit`` and ``spatialvit --help`` stay fast."""

from ._lazy import lazy_exports

__version__ = "0.1.0"
__getattr__, __dir__, _names = lazy_exports(__name__, {".models": "create_model list_models"})
__all__ = ["__version__", *_names]
