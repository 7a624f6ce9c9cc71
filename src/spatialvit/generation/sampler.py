"""Sampling the flow ODE ``dx/dt = v(x, t, y)`` from noise (t=1) to images (t=0), with classifier-free guidance,
and saving samples as an image grid."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..data import DatasetInfo
from ..report.figures import pyplot
from ..runtime import progress_bar
from .config import SAMPLERS, SamplingConfig


def sample_classes(
    model: nn.Module, config: SamplingConfig, seed: int = 0, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """``config.per_class`` images of every class ``[N, C, H, W]`` in ``[0, 1]`` (on the CPU) and their labels,
    drawn from ``seed``."""
    labels = class_labels(model.num_classes, config.per_class)
    gen = torch.Generator().manual_seed(seed)
    x = sample(
        model,
        labels,
        config.sample_steps,
        method=config.sampler,
        cfg_scale=config.cfg_scale,
        generator=gen,
        progress=progress,
    )
    return x.add(1).div(2).cpu(), labels


def class_names(info: DatasetInfo) -> list[str]:
    """One label per class for a sample grid's rows: ``"3"`` or ``"3 Dress"`` where the data names its classes."""
    named = [info.classes[k] if k < len(info.classes) else str(k) for k in range(info.num_classes)]
    return [str(k) if name == str(k) else f"{k} {name}" for k, name in enumerate(named)]


def guided_velocity(model: nn.Module, x: torch.Tensor, t: float, y: torch.Tensor, cfg_scale: float) -> torch.Tensor:
    """``v_uncond + cfg_scale * (v_cond - v_uncond)`` for ``x[B, C, H, W]`` at time ``t``, labels ``y[B]``.

    ``cfg_scale = 1`` is the plain conditional velocity (one model call); otherwise the conditional and
    unconditional predictions come from one batched call of size ``2B``.
    """
    tt = torch.full((x.shape[0],), t, device=x.device)
    if cfg_scale == 1.0:
        return model(x, tt, y)
    v_cond, v_uncond = model(
        torch.cat([x, x]), torch.cat([tt, tt]), torch.cat([y, torch.full_like(y, model.null_class)])
    ).chunk(2)
    return v_uncond + cfg_scale * (v_cond - v_uncond)


@torch.no_grad()
def sample(
    model: nn.Module,
    labels: torch.Tensor,
    steps: int = 20,
    method: str = "heun",
    cfg_scale: float = 2.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Generate one image per label ``labels[B]``; returns ``[B, C, H, W]`` in ``[-1, 1]`` (clamped).

    The start noise is drawn from ``generator`` on the CPU, so a seed fixes the result. ``method="euler"`` makes
    ``steps`` model evaluations; ``"heun"`` (second order) makes ``2 * steps - 1`` (its last step is Euler, since
    the corrector would evaluate at t=0). Times are evenly spaced from 1 to 0.
    """
    if method not in SAMPLERS:
        raise ValueError(f"method must be one of {SAMPLERS}, got {method!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    device = next(model.parameters()).device
    shape = (len(labels), model.in_chans, model.img_size, model.img_size)
    x = torch.randn(shape, generator=generator).to(device)
    y = labels.to(device)
    times = torch.linspace(1.0, 0.0, steps + 1).tolist()
    for t, t_next in progress_bar(itertools.pairwise(times), total=steps, desc="sampling", enabled=progress):
        v = guided_velocity(model, x, t, y, cfg_scale)
        x_next = x + (t_next - t) * v
        if method == "heun" and t_next > 0:
            v_next = guided_velocity(model, x_next, t_next, y, cfg_scale)
            x_next = x + (t_next - t) * 0.5 * (v + v_next)
        x = x_next
    return x.clamp(-1.0, 1.0)


def class_labels(num_classes: int, per_class: int) -> torch.Tensor:
    """Labels ``[num_classes * per_class]``: ``per_class`` of class 0, then of class 1, ..."""
    return torch.arange(num_classes).repeat_interleave(per_class)


def image_grid(images: torch.Tensor, ncol: int, pad: int = 1) -> torch.Tensor:
    """Tile ``images[N, C, H, W]`` in ``[0, 1]`` row by row, ``ncol`` per row, into one ``[C, H', W']`` image."""
    N, C, H, W = images.shape
    nrow = -(-N // ncol)
    grid = images.new_ones(C, nrow * (H + pad) + pad, ncol * (W + pad) + pad)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        grid[:, pad + r * (H + pad) : pad + r * (H + pad) + H, pad + c * (W + pad) : pad + c * (W + pad) + W] = img
    return grid


def save_image_grid(
    images: torch.Tensor, path: str | Path, ncol: int, scale: int = 4, row_labels: Sequence[str] | None = None
) -> Path:
    """Write ``images[N, C, H, W]`` in ``[0, 1]`` as a PNG grid (each pixel ``scale x scale``); ``row_labels`` (one
    per row, e.g. the class of each row) are written left of the rows."""
    grid = image_grid(images.detach().float().cpu().clamp(0, 1), ncol)
    grid = grid.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = grid[0].numpy() if grid.shape[0] == 1 else grid.permute(1, 2, 0).numpy()
    cmap = "gray" if grid.shape[0] == 1 else None
    plt = pyplot()
    if row_labels is None:
        plt.imsave(path, arr, cmap=cmap, vmin=0.0, vmax=1.0)
        return path
    h, w = arr.shape[:2]
    margin, dpi = 12 + 7 * max(len(label) for label in row_labels), 100  # pixels left of the grid for the labels
    fig = plt.figure(figsize=((w + margin) / dpi, h / dpi), dpi=dpi)
    ax = fig.add_axes((margin / (w + margin), 0, w / (w + margin), 1))
    ax.imshow(arr, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    cell = h / len(row_labels)
    ax.set_yticks([cell * (i + 0.5) for i in range(len(row_labels))], list(row_labels), fontsize=9)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
