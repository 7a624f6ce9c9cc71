"""PNG plots of sensitivity sweeps: accuracy vs shuffle grid, accuracy vs mask ratio per grid (one curve per model),
and a grid of example perturbed images. The plots read the rows of ``SensitivityResult.rows()`` (or of several models
concatenated), so they know nothing of the probes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..report.figures import clipped_errors, model_color, pyplot, save_figure, show_image

plt = pyplot()

Row = dict[str, Any]
_MARKERS = {"yes": "o", "no": "X", "n/a": "s"}
# The possible range of each plotted metric: its axis spans it and error bars are clipped to it.
RANGES = {"acc1": (0.0, 1.0), "acc5": (0.0, 1.0), "flip_rate": (0.0, 1.0), "sensitivity": (None, 1.0)}


def _models(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r["model"] for r in rows))


def _errorbar(ax: plt.Axes, xs: list, ys: list, errs: list, aligned: list[str], label: str, metric: str) -> None:
    """One model's curve (its family's colour), its error bars (clipped to the metric's possible range; none without
    errors), and a marker per point telling aligned / misaligned / n/a."""
    yerr = clipped_errors(ys, errs, *RANGES.get(metric, (None, None)))
    line = ax.errorbar(xs, ys, yerr=yerr, label=label, capsize=3, linewidth=1.5, color=model_color(label))
    for x, y, a in zip(xs, ys, aligned):
        face = line[0].get_color() if a != "no" else "white"
        ax.plot([x], [y], _MARKERS[a], color=line[0].get_color(), markerfacecolor=face, markersize=7)
    ax.set_ylabel(metric)


def _shuffle_panel(ax: plt.Axes, rows: Sequence[Row], metric: str, kind: str, error: str) -> None:
    grids = sorted({r["grid"]: r["blocks"] for r in rows if r["kind"] == kind}.items(), key=lambda kv: kv[1])
    labels = ["1x1", *[g for g, _ in grids]]
    for model in _models(rows):
        mine = {r["grid"]: r for r in rows if r["model"] == model and r["kind"] in (kind, "clean")}
        pts = [(i, mine[g]) for i, g in enumerate(labels) if g in mine]
        _errorbar(
            ax,
            [i for i, _ in pts],
            [r[metric] for _, r in pts],
            errs=[r.get(f"{metric}_{error}") for _, r in pts],
            aligned=[r["aligned"] for _, r in pts],
            label=model,
            metric=metric,
        )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_xlabel(f"{kind} grid (1x1 = clean)")
    ax.set_title(f"block {kind}")


def _mask_panel(ax: plt.Axes, rows: Sequence[Row], metric: str, grid: str, error: str) -> None:
    for model in _models(rows):
        clean = [r for r in rows if r["model"] == model and r["kind"] == "clean"]
        mine = sorted(
            (r for r in rows if r["model"] == model and r["kind"] == "mask" and r["grid"] == grid),
            key=lambda r: r["ratio"],
        )
        pts = [{**clean[0], "ratio": 0.0, "aligned": mine[0]["aligned"] if mine else "n/a"}, *mine] if clean else mine
        _errorbar(
            ax,
            [r["ratio"] for r in pts],
            [r[metric] for r in pts],
            errs=[r.get(f"{metric}_{error}") for r in pts],
            aligned=[r["aligned"] for r in pts],
            label=model,
            metric=metric,
        )
    fill = next((r["fill"] for r in rows if r["kind"] == "mask" and r["grid"] == grid), "")
    ax.set_xlabel("mask ratio")
    ax.set_title(f"block mask {grid} ({fill} fill)")


def plot_sensitivity(
    rows: Sequence[Row],
    path: str | Path,
    kinds: Sequence[str] = ("shuffle", "mask", "rotate"),
    metric: str = "acc1",
    error: str = "se",
    chance: float | None = None,
) -> Path:
    """One figure, one panel per shuffle/rotation kind and per mask grid, one curve per model; saves a PNG.

    Error bars: the rows' ``{metric}_{error}`` (``se``: standard error over repeats; ``ci``: the 95 % interval
    over seeds of a multi-seed study; none where the rows have none), clipped to the metric's possible range, which
    an accuracy axis spans (0 to 1). ``chance``: accuracy at chance (1/classes), drawn as a dotted line.
    Filled markers: blocks aligned with the model's patches; white X: misaligned; squares: no patches (CNN)."""
    panels: list[tuple[str, str]] = []
    for kind in kinds:
        if kind == "mask":
            grids = sorted({r["grid"]: r["blocks"] for r in rows if r["kind"] == "mask"}.items(), key=lambda kv: kv[1])
            panels += [("mask", g) for g, _ in grids]
        elif any(r["kind"] == kind for r in rows):
            panels.append((kind, ""))
    if not panels:
        raise ValueError(f"no rows of kind {', '.join(kinds)} to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False, sharey=True)
    for ax, (kind, grid) in zip(axes[0], panels):
        if kind == "mask":
            _mask_panel(ax, rows, metric, grid, error)
        else:
            _shuffle_panel(ax, rows, metric, kind, error)
        if chance is not None:
            ax.axhline(chance, linestyle=":", color="#555555", linewidth=1, label="chance (1/classes)")
        low, high = RANGES.get(metric, (None, None))
        if low is not None and high is not None:
            ax.set_ylim(low, high)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return save_figure(fig, path)


def plot_examples(columns: Mapping[str, torch.Tensor], path: str | Path) -> Path:
    """A grid of example images: one column per entry of ``columns`` (title -> ``[n, C, H, W]`` pixels in [0, 1],
    clipped for display), one row per image. Saves a PNG."""
    titles = list(columns)
    n = len(next(iter(columns.values())))
    fig, axes = plt.subplots(n, len(titles), figsize=(1.6 * len(titles), 1.6 * n), squeeze=False)
    for j, title in enumerate(titles):
        for i in range(n):
            ax = axes[i][j]
            show_image(ax, columns[title][i])
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][j].set_title(title, fontsize=8)
    return save_figure(fig, path)
