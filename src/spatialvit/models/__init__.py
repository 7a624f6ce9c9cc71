"""Models: one ViT with a pluggable token mixer, CNN baselines, and the registry that names them."""

from . import cnn, vit  # noqa: F401  (register the models)
from .cnn import ResNet
from .registry import create_model, list_models, model_defaults, register_model
from .vit import VisionTransformer, register_vit_family

__all__ = [
    "ResNet",
    "VisionTransformer",
    "create_model",
    "list_models",
    "model_defaults",
    "register_model",
    "register_vit_family",
]
