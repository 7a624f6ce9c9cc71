"""The study's two attention figures: mean attention distance per layer, and a query patch's attention maps."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..report.figures import clipped_errors, model_color, pyplot, save_figure, show_image
from ..report.stats import mean_ci

plt = pyplot()


def plot_attention_distance(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Rows ``(model, [seed,] layer, head, distance_px)``: per layer, a line through each model's mean over heads
    (and seeds, with the 95 % interval over seeds as error bars when there are several) and a dot per head (mean over
    seeds). Colours: the model's family. Saves a PNG."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = [r for r in rows if r["model"] == model]
        layers = sorted({r["layer"] for r in mine})
        seeds = sorted({r.get("seed", 0) for r in mine})
        per_seed = [[_mean(r["distance_px"] for r in mine if r["layer"] == la and r.get("seed", 0) == s) for s in seeds]
                    for la in layers]  # fmt: skip
        intervals = [mean_ci(v) for v in per_seed]
        means = [ci.mean for ci in intervals]
        yerr = clipped_errors(means, [None if ci.single_seed else ci.half_width for ci in intervals], 0.0, None)
        color = model_color(model)
        ax.errorbar(layers, means, yerr=yerr, fmt="-o", color=color, capsize=3, label=model)
        heads = sorted({r["head"] for r in mine})
        dots = [(la, _mean(r["distance_px"] for r in mine if r["layer"] == la and r["head"] == h))
                for la in layers for h in heads]  # fmt: skip
        ax.scatter([la + 0.06 * (i - 2) for la, _ in dots], [d for _, d in dots], s=10, color=color, alpha=0.4)
    ax.set_xticks(sorted({r["layer"] for r in rows}))
    ax.set_xlabel("layer")
    ax.set_ylabel("mean attention distance (px)")
    ax.set_title("mean attention distance (line: mean over heads and seeds, dots: heads)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _mean(values: Iterable[float]) -> float:
    values = list(values)
    return sum(values) / len(values)


def plot_attention_maps(
    images: torch.Tensor, maps: Mapping[str, Sequence[torch.Tensor]], query: tuple[int, int], path: str | Path
) -> Path:
    """One row per (model, image): the image with the query patch outlined, then the query's attention per layer, on
    one colour scale (0 to the largest weight shown) with its colour bar.

    ``images``: ``[n, C, H, W]`` in [0, 1]; ``maps[model][layer]``: ``[n, gh, gw]`` (mean over heads)."""
    n = images.shape[0]
    layers = max(len(m) for m in maps.values())
    gh, gw = next(iter(maps.values()))[0].shape[-2:]
    ph, pw = images.shape[-2] / gh, images.shape[-1] / gw
    vmax = max(float(a.max()) for per_layer in maps.values() for a in per_layer)
    rows = len(maps) * n
    fig = plt.figure(figsize=(1.5 * (layers + 1) + 0.6, 1.5 * rows))
    grid = fig.add_gridspec(rows, layers + 2, width_ratios=[1] * (layers + 1) + [0.08])
    shown = None
    for m, (model, per_layer) in enumerate(maps.items()):
        for i in range(n):
            row = [fig.add_subplot(grid[m * n + i, j]) for j in range(layers + 1)]
            show_image(row[0], images[i])
            row[0].add_patch(plt.Rectangle((query[1] * pw - 0.5, query[0] * ph - 0.5), pw, ph, fill=False, color="r"))
            row[0].set_ylabel(model.replace("_patch", "\n_patch"), fontsize=6)
            for la in range(layers):
                if la < len(per_layer):
                    shown = row[la + 1].imshow(per_layer[la][i].cpu().numpy(), cmap="viridis", vmin=0, vmax=vmax)
                if m == 0 and i == 0:
                    row[la + 1].set_title(f"layer {la}", fontsize=8)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    bar = fig.colorbar(shown, cax=fig.add_subplot(grid[:, -1]))
    bar.set_label("attention weight (mean over heads)", fontsize=7)
    bar.ax.tick_params(labelsize=6)
    return save_figure(fig, path)
