"""Shared matplotlib plumbing for every PNG the package writes: the headless backend, saving, image display."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


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
