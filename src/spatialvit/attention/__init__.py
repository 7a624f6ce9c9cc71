"""Token mixers behind one interface: ``forward(x[B, N, C], grid=(H, W), return_attn=False)``.

Importing this package registers every mixer; pick one by name with :func:`create_attention`:
``softmax`` (plain), ``conv_qkv`` (Xu 2025), ``positional`` and ``gpsa`` (Jelassi 2022, ConViT), ``decay`` (RMT's
fixed Manhattan decay), ``cag`` (SDT's context-aware decay). All but positional attention are one module,
:class:`SoftmaxAttention`, with other parts (a q/k/v projection, a bias source); :mod:`.backend` alone chooses the
kernel of each call.
"""

from . import cag, conv_qkv, decay, positional, softmax  # noqa: F401  (register the mixers)
from .backend import BACKENDS, biased_attention, resolve_backend
from .base import TokenMixer
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
    "FixedDecay",
    "GatedPositionalAttention",
    "ManhattanBias",
    "ManhattanDecayAttention",
    "PositionalAttention",
    "SoftmaxAttention",
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
