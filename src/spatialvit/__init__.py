"""spatialvit: spatial structure in Vision Transformers — measure it, fix it in the architecture, understand it."""

from .models import create_model, list_models

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "list_models"]
