"""Plots of the synthetic experiments (matplotlib, Agg backend, saved as PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..report.figures import pyplot, save_figure

Row = dict[str, Any]


def plot_attention_groups(
    A: torch.Tensor, groups: torch.Tensor, grid: tuple[int, int], path: str | Path, title: str = ""
) -> Path:
    """Three panels: ``A[D, D]`` as a heat-map, the true same-group matrix, and the groups drawn on the patch grid."""
    plt = pyplot()
    A, groups = torch.as_tensor(A).detach().float().cpu(), torch.as_tensor(groups).cpu()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.6))
    im = axes[0].imshow(A.numpy(), cmap="viridis")
    axes[0].set_title("attention A (query row, key column)")
    fig.colorbar(im, ax=axes[0], fraction=0.046)
    axes[1].imshow((groups[:, None] == groups[None, :]).float().numpy(), cmap="Greys")
    axes[1].set_title("true groups: same-group pairs")
    axes[2].imshow(groups.view(*grid).numpy(), cmap="tab20", interpolation="nearest")
    for idx, gid in enumerate(groups.tolist()):
        axes[2].text(idx % grid[1], idx // grid[1], str(gid), ha="center", va="center", fontsize=6)
    axes[2].set_title("group id of each patch on the grid")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, dpi=90)


def plot_association_history(history: Sequence[Row], path: str | Path, title: str = "") -> Path:
    """Association metrics and test accuracy against the training step (rows of ``train_association``)."""
    plt = pyplot()
    steps = [r["step"] for r in history]
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for key, label in (
        ("mass", "within-group mass"),
        ("auc", "association AUC"),
        ("top_c", "top-C precision"),
        ("ari", "adjusted Rand index"),
        ("test_acc", "test accuracy"),
    ):
        if key in history[0]:
            ax.plot(steps, [r[key] for r in history], label=label, lw=1.6)
    ax.axhline(history[0]["chance_mass"], color="grey", ls=":", lw=1, label="chance mass C/D")
    ax.set_xlabel("training step")
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    ax.set_title(title or "patch association during training")
    return save_figure(fig, path, dpi=90)


def plot_transfer(summary: Sequence[Row], path: str | Path, title: str = "") -> Path:
    """Test accuracy against the number of task-2 samples ``n`` (log axis), one curve per arm, ±1 std bands."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for arm in dict.fromkeys(r["arm"] for r in summary):
        rows = sorted((r for r in summary if r["arm"] == arm), key=lambda r: r["n"])
        n = [r["n"] for r in rows]
        mean = torch.tensor([r["test_acc_mean"] for r in rows])
        std = torch.tensor([r["test_acc_std"] for r in rows])
        ax.plot(n, mean.numpy(), marker="o", label=arm)
        ax.fill_between(n, (mean - std).numpy(), (mean + std).numpy(), alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("task-2 training samples n")
    ax.set_ylabel("task-2 test accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "transfer: frozen vs re-initialised vs content attention")
    return save_figure(fig, path, dpi=90)
