"""Token mixers behind one interface: ``forward(x[B, N, C], grid=(H, W), return_attn=False)``.

Importing this package registers every mixer; pick one by name with :func:`create_attention`.
"""

from . import softmax  # noqa: F401  (registers "softmax")
from .base import TokenMixer
from .kernels import reference_attention, sdpa_attention
from .registry import create_attention, get_attention, list_attention, register_attention

__all__ = [
    "TokenMixer",
    "create_attention",
    "get_attention",
    "list_attention",
    "reference_attention",
    "register_attention",
    "sdpa_attention",
]
