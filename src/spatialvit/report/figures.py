"""Shared matplotlib plumbing for every PNG the package writes: the headless backend, saving, image display, family
colours and clipped error bars. The plots themselves live beside their domain: ``probes.plots`` (sensitivity sweeps),
``study.plots`` (attention distance and maps), ``synth.plots`` (synthetic experiments)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

# Okabe & Ito's colour-blind-safe palette, one colour per model family, the same in every plot.
FAMILY_COLORS = (
    (r"^resnet", "#000000", "CNN"),
    (r"convqkv", "#E69F00", "conv Q/K/V"),
    (r"posattn", "#56B4E9", "positional attention"),
    (r"gpsa", "#009E73", "GPSA"),
    (r"(^|_)rmt", "#D55E00", "fixed decay (RMT)"),
    (r"(^|_)sdt", "#CC79A7", "SDT"),
    (r"^vit_", "#0072B2", "plain ViT"),
)
OTHER_COLOR = "#999999"


def model_color(name: str) -> str:
    """The colour of ``name``'s family (plain ViT, conv Q/K/V, positional, GPSA, RMT, SDT, CNN; grey otherwise)."""
    return next((color for pattern, color, _ in FAMILY_COLORS if re.search(pattern, name)), OTHER_COLOR)


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 110) -> Path:
    """Lay out ``fig``, write it to ``path`` as PNG (parent folders created), close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path


def show_image(ax: Any, img: torch.Tensor) -> None:
    """Draw ``img[C, H, W]`` (pixels in [0, 1], clipped) on ``ax``: grey for one channel, else RGB (first 3)."""
    arr = img.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    if arr.shape[-1] == 1:
        ax.imshow(arr[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(arr[..., :3])


def clipped_errors(ys: Sequence[float], errs: Sequence[float | None], low: float | None, high: float | None) -> Any:
    """Error bars ``y ± err`` cut to ``[low, high]`` as matplotlib's ``[[below], [above]]``; ``None`` (no bar) when no
    point has an error (``None`` or NaN: one seed, one draw)."""
    known = [e is not None and not math.isnan(e) for e in errs]
    if not any(known):
        return None
    below = [0.0 if not k else min(e, y - low) if low is not None else e for y, e, k in zip(ys, errs, known)]
    above = [0.0 if not k else min(e, high - y) if high is not None else e for y, e, k in zip(ys, errs, known)]
    return [[max(b, 0.0) for b in below], [max(a, 0.0) for a in above]]
