"""Models: one ViT with a pluggable token mixer, CNN baselines, and the registry that names them."""

from . import cnn, hierarchical, vit  # noqa: F401  (register the models)
from .cnn import ResNet
from .complexity import count_flops, count_params, measure_complexity
from .hierarchical import HierarchicalViT
from .registry import create_model, list_models, model_defaults, register_model
from .vit import VisionTransformer, register_vit_family

__all__ = [
    "HierarchicalViT",
    "ResNet",
    "VisionTransformer",
    "count_flops",
    "count_params",
    "create_model",
    "list_models",
    "measure_complexity",
    "model_defaults",
    "register_model",
    "register_vit_family",
]
