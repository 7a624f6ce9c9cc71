"""Token mixers behind one interface: ``forward(x[B, N, C], grid=(H, W), return_attn=False)``.

Importing this package registers every mixer of :data:`spatialvit.catalog.MIXERS`; pick one by name with
:func:`create_attention`: ``softmax`` (plain), ``conv_qkv`` (Xu 2025), ``positional`` and ``gpsa`` (Jelassi 2022,
ConViT), ``decay`` (RMT's fixed Manhattan decay), ``cag`` (SDT's context-aware decay), ``relpos`` (Swin/BEiT's
learned relative-position bias). All but positional attention are one module, :class:`SoftmaxAttention`, with other
parts (a q/k/v projection, a bias source following :mod:`.bias`); :mod:`.backend` alone chooses the kernel of each
call.
"""

import importlib

from ..catalog import MIXERS
from .backend import BACKENDS, biased_attention, resolve_backend
from .base import TokenMixer
from .bias import DenseBias, SpatialBias
from .cag import ContextDecay, ContextDecayAttention
from .conv_qkv import ConvQKV, ConvQKVAttention
from .decay import FixedDecay, ManhattanDecayAttention
from .kernels import factorised_attention, reference_attention, sdpa_attention
from .manhattan import ManhattanBias, manhattan_distance
from .positional import GatedPositionalAttention, PositionalAttention
from .registry import create_attention, get_attention, list_attention, register_attention
from .softmax import SoftmaxAttention

__all__ = [
    "BACKENDS",
    "ContextDecay",
    "ContextDecayAttention",
    "ConvQKV",
    "ConvQKVAttention",
    "DenseBias",
    "FixedDecay",
    "GatedPositionalAttention",
    "ManhattanBias",
    "ManhattanDecayAttention",
    "PositionalAttention",
    "SoftmaxAttention",
    "SpatialBias",
    "TokenMixer",
    "biased_attention",
    "create_attention",
    "factorised_attention",
    "get_attention",
    "list_attention",
    "manhattan_distance",
    "reference_attention",
    "register_attention",
    "resolve_backend",
    "sdpa_attention",
]

for _entry in MIXERS:  # register every mixer of the catalog (a new one: its module and one row there)
    importlib.import_module(f".{_entry.module}", __name__)
