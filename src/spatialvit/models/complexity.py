"""Parameter and FLOP counts of a model at an input size, measured with PyTorch's ``FlopCounterMode``.

**Convention.** ``FlopCounterMode`` counts **2 FLOPs per multiply-accumulate** (an ``[m, k] @ [k, n]`` matmul is
``2mkn``). The "FLOPs" of RMT, SDT and most vision papers (fvcore, ptflops) are multiply-accumulates: divide by 2
to compare (:attr:`Complexity.macs`).

**What is counted**: matmuls (every linear layer, attention's ``q k^T`` and ``A v``), convolutions, and fused
attention calls. Elementwise work (softmax, the decay bias, rotary rotation, activations, residual adds), norms and
pooling are not counted (fvcore counts norms, about 1 % of these models).

**Attention through SDPA.** ``FlopCounterMode`` has formulas for the CUDA SDPA kernels and sees the matmuls of the
math fallback, but in torch 2.13 it counts **nothing** for the CPU fused kernel
(``aten._scaled_dot_product_flash_attention_for_cpu``, what ``F.scaled_dot_product_attention`` runs on CPU when q, k
and v share a head dim). :func:`measure_complexity` adds that kernel (forward and backward) with the same formula:
``2·B·h·N_q·N_k·(d_qk + d_v)`` forward, twice that backward. What is counted is what the model runs: a mixer on the
``factorised`` backend carries its extra q/k columns (and padding) into SDPA, the ``reference`` backend of a
decomposed mixer materialises ``N x N`` maps. For the papers' convention build the model with
``attn_kwargs={"backend": "sdpa"}`` (plain ``q k^T`` and ``A v`` with the head dim, rows and columns separately
where decomposed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

_aten = torch.ops.aten


def _attention_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int]) -> int:
    """``2·B·h·N_q·N_k·(d_qk + d_v)``: the ``q k^T`` and ``A v`` products of one attention call."""
    *batch, n_q, d_qk = query_shape
    n_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * int(torch.Size(batch).numel()) * n_q * n_k * (d_qk + d_v)


def _cpu_sdpa_forward(query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any) -> int:
    return _attention_flops(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward(
    grad_out_shape: Any, query_shape: Any, key_shape: Any, value_shape: Any, *args: Any, **kwargs: Any
) -> int:
    return 2 * _attention_flops(query_shape, key_shape, value_shape)  # dQ, dK, dV and dA: four products


CUSTOM_FLOP_FORMULAS = {
    _aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_forward,
    _aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_sdpa_backward,
}


@dataclass(frozen=True)
class Complexity:
    """Parameters and forward FLOPs of one model at one input size (``flops``: 2 per multiply-accumulate)."""

    params: int
    flops: int
    img_size: tuple[int, int]
    batch_size: int
    by_operator: dict[str, int]

    @property
    def macs(self) -> int:
        """Multiply-accumulates, the unit the papers call "FLOPs"."""
        return self.flops // 2


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all, or those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _size_of(model: nn.Module, img_size: int | Sequence[int] | None) -> tuple[int, int]:
    size = getattr(model, "img_size", None) if img_size is None else img_size
    if size is None:
        raise ValueError(f"{type(model).__name__} has no img_size attribute: pass img_size")
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def measure_complexity(
    model: nn.Module,
    img_size: int | Sequence[int] | None = None,
    batch_size: int = 1,
    in_chans: int | None = None,
) -> Complexity:
    """Parameters and the FLOPs of one forward pass (eval mode, no gradients) of ``batch_size`` images of
    ``img_size`` (default: the model's ``img_size``) with ``in_chans`` channels (default: the model's)."""
    size = _size_of(model, img_size)
    chans = in_chans if in_chans is not None else getattr(model, "in_chans", 3)
    param = next(model.parameters(), None)
    x = torch.zeros(batch_size, chans, *size, device=param.device if param is not None else None)
    if param is not None and param.is_floating_point():
        x = x.to(param.dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=CUSTOM_FLOP_FORMULAS) as counter:
            model(x)
    finally:
        model.train(was_training)
    by_op = {str(op).removeprefix("aten."): int(n) for op, n in counter.get_flop_counts()["Global"].items()}
    return Complexity(count_params(model), counter.get_total_flops(), size, batch_size, by_op)


def count_flops(model: nn.Module, img_size: int | Sequence[int] | None = None, batch_size: int = 1) -> int:
    """FLOPs (2 per multiply-accumulate) of one forward pass; see :func:`measure_complexity` and the module notes."""
    return measure_complexity(model, img_size, batch_size).flops
