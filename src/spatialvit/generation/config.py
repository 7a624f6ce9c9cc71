"""The configs of generation, without torch (the command line reads them to build its flags):
:class:`DenoiserConfig` (training a denoiser), :class:`SamplingConfig` (drawing samples), and one config per
``spatialvit generate`` action (:class:`GenerateTrainConfig`, :class:`GenerateSampleConfig`,
:class:`GenerateEvalConfig`) that nests them beside the run options.

:mod:`.loop` and :mod:`.sampler` re-export them; :mod:`.flow` and :mod:`.sampler` take their choices from here.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .. import run_options as run
from ..catalog import mixer_names
from ..config import DEFAULT_DATA, Config, option

T_SAMPLING = ("logit_normal", "uniform")
SAMPLERS = ("euler", "heun")
DIT_SIZES = ("micro", "tiny", "small")
REAL_SPLITS = ("train", "test")


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
    seed: int = run.seed("initialisation, batches, times, noise and label dropout")

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


def json_object(text: str) -> dict[str, Any]:
    """A JSON object from the command line, with the position of a syntax error in the message."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err.msg} at character {err.pos + 1}): {text}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object like '{{\"alpha\": 2}}', got {text}")
    return value


@dataclass(frozen=True)
class GenerateTrainConfig(Config):
    """``spatialvit generate train``: a DiT-style denoiser with any token mixer, trained on a dataset."""

    data: str = option(DEFAULT_DATA, "dataset spec NAME or NAME:PATH", metavar="SPEC")
    img_size: int = option(16, "image side the data is resized to")
    mixer: str = option(
        "softmax",
        f"token mixer: {', '.join(mixer_names())}, or a model family's name for its mixer (sdt, rmt, posattn, ...)",
        metavar="NAME",
    )
    attn_kwargs: dict[str, Any] = option(
        help="options for the mixer as a JSON object, e.g. '{\"alpha\": 2}' (default: none: the mixer's own)",
        factory=dict,
        parse=json_object,
        metavar="JSON",
    )
    size: str = option("micro", "transformer size", metavar="|".join(DIT_SIZES))
    patch_size: int = option(2, "patch side")
    denoiser: DenoiserConfig = option(help="optimisation (its seed is the run's seed)", factory=DenoiserConfig)
    sampling: SamplingConfig = option(help="how samples are drawn", factory=lambda: SamplingConfig(per_class=8))
    device: str = run.device()
    threads: int | None = run.threads()
    out: str | None = run.out(None, "output folder (default: none, required)")
    resume: str | None = option(
        None,
        "continue a run: 'auto' (or --resume alone) continues OUT/denoiser.pt, else that checkpoint PATH "
        "(none: a new run)",
        metavar="PATH",
    )
    overwrite: bool = run.overwrite("the denoiser, its losses and samples")
    progress: bool = run.progress()

    def validate(self) -> None:
        if self.size not in DIT_SIZES:
            raise ValueError(f"size must be one of {', '.join(DIT_SIZES)}, got {self.size!r}")
        for name in ("img_size", "patch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.resume is not None and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: continue the run or start it again")
        run.check(self)


@dataclass(frozen=True)
class GenerateSampleConfig(Config):
    """``spatialvit generate sample``: a labelled sample grid from a denoiser checkpoint."""

    checkpoint: str = option("", "denoiser checkpoint (OUT/denoiser.pt of `generate train`)", metavar="CHECKPOINT")
    save_tensor: str | None = option(
        None, "also save images [N, C, H, W] and labels to this .pt file (none: not saved)", metavar="FILE"
    )
    sampling: SamplingConfig = option(help="how samples are drawn", factory=lambda: SamplingConfig(per_class=8))
    seed: int = run.seed("the noise")
    device: str = run.device()
    threads: int | None = run.threads()
    out: str | None = option(
        None, "PNG file of the sample grid (none: sample_seed<SEED>.png in the checkpoint's folder)", metavar="FILE"
    )
    overwrite: bool = run.overwrite("the sample grid and tensor file")
    progress: bool = run.progress()

    def validate(self) -> None:
        run.check(self)


@dataclass(frozen=True)
class GenerateEvalConfig(Config):
    """``spatialvit generate evaluate``: FID / precision / recall / accuracy of denoisers, judged by a classifier."""

    checkpoints: list[str] = option(help="denoiser checkpoints to compare", factory=list, metavar="CHECKPOINT")
    classifier: str | None = option(
        None, "classifier checkpoint of `spatialvit train` (default: none, required)", metavar="PATH"
    )
    data: str | None = option(None, "dataset spec of the real images (none: the denoiser's)", metavar="SPEC")
    real_split: str = option("train", "real reference set", metavar="|".join(REAL_SPLITS))
    k: int = option(3, "neighbours for precision/recall")
    name: str = option("generation_metrics", "table name", metavar="NAME")
    sampling: SamplingConfig = option(help="how samples are drawn", factory=lambda: SamplingConfig(per_class=36))
    seed: int = run.seed("the noise")
    device: str = run.device()
    threads: int | None = run.threads()
    out: str | None = run.out(None, "output folder (default: none, required)")
    overwrite: bool = run.overwrite("the table and sample grids")
    progress: bool = run.progress()

    def validate(self) -> None:
        if self.real_split not in REAL_SPLITS:
            raise ValueError(f"real_split must be one of {', '.join(REAL_SPLITS)}, got {self.real_split!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        run.check(self)
