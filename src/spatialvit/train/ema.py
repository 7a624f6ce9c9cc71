"""Model EMA: an exponential moving average of a model's weights, updated after every optimiser step.

``ema = decay * ema + (1 - decay) * weights`` over every floating-point entry of the ``state_dict`` (parameters and
buffers such as BatchNorm statistics); integer buffers (``num_batches_tracked``) are copied. The same rule as timm's
``ModelEmaV2``/``ModelEmaV3`` (DeiT and RMT use it with decay 0.99996 for a global batch of 512). With ``warmup``
the decay of step ``t`` is ``min(decay, 1 - (1 + t)^(-2/3))`` (timm's ``ModelEmaV3`` warm-up with its defaults), so
a short run's EMA is not dominated by its initial weights.

The average is a pure function of the weights after each step, so it is as reproducible as they are; it is saved
in the checkpoint (``ema``) and restored on resume.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

WARMUP_POWER = 2 / 3  # timm ModelEmaV3's default warmup_power (warmup_gamma 1)


class ModelEma:
    """An averaged copy of ``model`` (``module``, in eval mode, no gradients), on the model's device."""

    def __init__(self, model: nn.Module, decay: float, warmup: bool = False) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay, self.warmup = decay, warmup
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used by the update after optimiser step ``step`` (1, 2, ...)."""
        if not self.warmup:
            return self.decay
        return min(self.decay, 1.0 - (1.0 + step) ** -WARMUP_POWER)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards ``model``'s current weights (call after optimiser step ``step``)."""
        weight = 1.0 - self.decay_at(step)
        ema_values, new_values = [], []
        for ema_v, model_v in zip(self.module.state_dict().values(), model.state_dict().values(), strict=True):
            if ema_v.is_floating_point():
                ema_values.append(ema_v)
                new_values.append(model_v.detach())
            else:
                ema_v.copy_(model_v)
        if ema_values:
            torch._foreach_lerp_(ema_values, new_values, weight)

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)
