"""The study's two attention figures: mean attention distance per layer, and a query patch's attention maps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..report.figures import pyplot, save_figure, show_image

plt = pyplot()


def plot_attention_distance(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Rows ``(model, layer, head, distance_px)``: per layer, a line through each model's head mean and a dot per
    head (the spread). Saves a PNG."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = [r for r in rows if r["model"] == model]
        layers = sorted({r["layer"] for r in mine})
        means = [
            sum(r["distance_px"] for r in mine if r["layer"] == la) / sum(r["layer"] == la for r in mine)
            for la in layers
        ]
        color = f"C{i}"
        ax.plot(layers, means, "-o", color=color, label=model)
        ax.scatter(
            [r["layer"] + 0.06 * (i - 2) for r in mine], [r["distance_px"] for r in mine], s=10, color=color, alpha=0.4
        )
    ax.set_xticks(sorted({r["layer"] for r in rows}))
    ax.set_xlabel("layer")
    ax.set_ylabel("mean attention distance (px)")
    ax.set_title("mean attention distance (line: mean over heads, dots: heads)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_attention_maps(
    images: torch.Tensor, maps: Mapping[str, Sequence[torch.Tensor]], query: tuple[int, int], path: str | Path
) -> Path:
    """One row per (model, image): the image with the query patch outlined, then the query's attention per layer.

    ``images``: ``[n, C, H, W]`` in [0, 1]; ``maps[model][layer]``: ``[n, gh, gw]`` (mean over heads)."""
    n = images.shape[0]
    layers = max(len(m) for m in maps.values())
    gh, gw = next(iter(maps.values()))[0].shape[-2:]
    ph, pw = images.shape[-2] / gh, images.shape[-1] / gw
    fig, axes = plt.subplots(
        len(maps) * n, layers + 1, figsize=(1.5 * (layers + 1), 1.5 * len(maps) * n), squeeze=False
    )
    for m, (model, per_layer) in enumerate(maps.items()):
        for i in range(n):
            row = axes[m * n + i]
            show_image(row[0], images[i])
            row[0].add_patch(plt.Rectangle((query[1] * pw - 0.5, query[0] * ph - 0.5), pw, ph, fill=False, color="r"))
            row[0].set_ylabel(model.replace("_patch", "\n_patch"), fontsize=6)
            for la in range(layers):
                if la < len(per_layer):
                    row[la + 1].imshow(per_layer[la][i].cpu().numpy(), cmap="viridis")
                if m == 0 and i == 0:
                    row[la + 1].set_title(f"layer {la}", fontsize=8)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    return save_figure(fig, path)
