"""The settings of the synthetic experiments, without torch (the command line reads them to build its flags):
:class:`FitSettings` (how the simplified model is trained), the transfer arms and the activation names.

:mod:`.experiments` re-exports them; ``ACTIVATIONS`` of :mod:`.model` has one function per name here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Config, option

TRANSFER_ARMS = ("frozen", "reinit", "content")
ACTIVATION_NAMES = ("gelu", "poly3", "poly5")
# model_name of the checkpoints of `spatialvit synth train` (model.pt)
SIMPLIFIED = "synth_simplified"


@dataclass(frozen=True)
class FitSettings(Config):
    """Plain (S)GD on the logistic loss: ``batch_size=None`` is full-batch gradient descent; ``attn_lr`` (default
    ``lr``) is the step size of the attention parameters, whose gradients through the softmax are much smaller;
    ``max_step`` caps the norm of each parameter group's update ``lr * grad`` (clipped GD: with the z^5 activation
    the gradient of Q grows by orders of magnitude once attention starts to concentrate)."""

    steps: int = option(300, "gradient steps")
    lr: float = option(0.1, "step size of the value vectors")
    attn_lr: float | None = option(None, "step size of Q (none: lr; see docs/synthetic.md)")
    batch_size: int | None = option(None, "minibatch SGD with this batch (none: full-batch gradient descent)")
    max_step: float | None = option(None, "cap on the norm of each update (none: no cap)")
    reset_diagonal: bool = option(True, "keep Q's diagonal at zero")
    train_attention: bool = option(True, "train Q (off: attention stays at its initialisation)")
    eval_every: int = option(10, "evaluate every N steps")

    def validate(self) -> None:
        for name in ("steps", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "attn_lr", "max_step"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0 and finite, got {value}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (or none for full batch), got {self.batch_size}")
