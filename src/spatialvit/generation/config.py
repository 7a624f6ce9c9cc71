"""The configs of generation, without torch (the command line reads them to build its flags):
:class:`DenoiserConfig` (training a denoiser) and :class:`SamplingConfig` (drawing samples).

:mod:`.loop` and :mod:`.sampler` re-export them; :mod:`.flow` and :mod:`.sampler` take their choices from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Config, option

T_SAMPLING = ("logit_normal", "uniform")
SAMPLERS = ("euler", "heun")


@dataclass(frozen=True)
class DenoiserConfig(Config):
    """Optimisation settings of :func:`~spatialvit.generation.loop.train_denoiser` (stored in the checkpoint).

    The defaults are the digits setting of the Generation section of ``docs/results.md`` (16x16, micro DiT,
    minutes on a CPU): short runs want a short EMA window (0.995 averages over ~200 steps).
    """

    steps: int = option(1200, "training steps")
    batch_size: int = option(32, "images per step")
    lr: float = option(2e-3, "AdamW learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup: int = option(100, "linear warm-up steps")
    ema_decay: float = option(0.995, "decay of the EMA weights used for sampling")
    label_dropout: float = option(0.1, "share of labels replaced by 'no class' (for classifier-free guidance)")
    t_sampling: str = option("logit_normal", "distribution of the flow times", metavar="|".join(T_SAMPLING))
    grad_clip: float = option(1.0, "clip the gradient norm to this value (0: no clipping)")
    checkpoint_every: int = option(500, "steps between checkpoints")
    seed: int = option(0, "seed of initialisation, batches, times, noise and label dropout")

    def validate(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be > 0 and finite, got {self.lr}")
        if self.t_sampling not in T_SAMPLING:
            raise ValueError(f"t_sampling must be one of {T_SAMPLING}, got {self.t_sampling!r}")


@dataclass(frozen=True)
class SamplingConfig(Config):
    """How samples are drawn: per class, ODE steps and solver, guidance, EMA or raw weights."""

    per_class: int = option(8, "samples per class")
    sample_steps: int = option(10, "ODE steps")
    sampler: str = option("heun", "ODE solver (heun: 2 model calls a step)", metavar="|".join(SAMPLERS))
    cfg_scale: float = option(2.0, "classifier-free guidance scale (1: none)")
    raw_weights: bool = option(False, "sample with the raw weights instead of the EMA")

    def validate(self) -> None:
        if self.per_class < 1:
            raise ValueError(f"per_class must be >= 1, got {self.per_class}")
        if self.sample_steps < 1:
            raise ValueError(f"sample_steps must be >= 1, got {self.sample_steps}")
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {self.sampler!r}")
