"""Token mixers behind one interface: ``forward(x[B, N, C], grid=(H, W), return_attn=False)``.

Importing this package registers every mixer; pick one by name with :func:`create_attention`:
``softmax`` (plain), ``conv_qkv`` (Xu 2025), ``positional`` and ``gpsa`` (Jelassi 2022, ConViT), ``decay`` (RMT's
fixed Manhattan decay), ``cag`` (SDT's context-aware decay).
"""

from . import cag, conv_qkv, decay, positional, softmax  # noqa: F401  (register the mixers)
from .base import TokenMixer
from .kernels import BACKENDS, factorised_attention, flex_attention, reference_attention, sdpa_attention
from .manhattan import ManhattanBias, manhattan_distance
from .registry import create_attention, get_attention, list_attention, register_attention

__all__ = [
    "BACKENDS",
    "ManhattanBias",
    "TokenMixer",
    "create_attention",
    "factorised_attention",
    "flex_attention",
    "get_attention",
    "list_attention",
    "manhattan_distance",
    "reference_attention",
    "register_attention",
    "sdpa_attention",
]
