"""Plots that do not mislead: accuracy axes span 0 to 1 with the chance line, error bars stay inside the possible
range and are drawn only where there is an interval, attention maps have a colour bar, sample grids class labels."""

import pytest
import torch
from matplotlib.collections import LineCollection

from spatialvit.generation.sampler import class_names, save_image_grid
from spatialvit.probes import plots as sensitivity_plots
from spatialvit.probes.plots import plot_sensitivity
from spatialvit.report.figures import clipped_errors
from spatialvit.study import plots as study_plots
from spatialvit.study.report import sweep_means


def _capture(monkeypatch, module) -> list:
    """Keep the figures ``module`` saves (instead of closing them) to inspect their axes."""
    figures = []

    def keep(fig, path, dpi=110):
        figures.append(fig)
        return path

    monkeypatch.setattr(module, "save_figure", keep)
    return figures


def _sweep(seed: int, acc: float) -> list[dict]:
    clean = {"model": "vit_micro_patch4", "kind": "clean", "grid": "1x1", "blocks": 1, "ratio": None, "fill": None}
    rows = [clean | {"aligned": "n/a", "acc1": acc, "sensitivity": 0.0, "seed": seed}]
    for g, blocks in (("2x2", 4), ("4x4", 16)):
        rows.append(clean | {"kind": "shuffle", "grid": g, "blocks": blocks, "aligned": "yes"}
                    | {"acc1": acc - 0.3 * (seed + 1) / blocks, "sensitivity": 0.1, "seed": seed})  # fmt: skip
    return rows


def test_clipped_errors_stay_in_range_and_vanish_without_an_interval():
    below, above = clipped_errors([0.48, 0.9], [2.386, 0.05], 0.0, 1.0)
    assert below == pytest.approx([0.48, 0.05]) and above == pytest.approx([0.52, 0.05])
    assert clipped_errors([0.5, 0.6], [None, float("nan")], 0.0, 1.0) is None
    assert clipped_errors([3.0], [5.0], 0.0, None) == [[3.0], [5.0]]


def test_two_seed_intervals_are_clipped_to_0_1_and_the_axis_spans_it(monkeypatch, tmp_path):
    """Two seeds far apart: the t interval (12.7 x the SE) reaches far past 0 and 1; the plot keeps to [0, 1]."""
    figures = _capture(monkeypatch, sensitivity_plots)
    rows = sweep_means(_sweep(0, 0.9) + _sweep(1, 0.1))
    assert max(r["acc1_ci"] for r in rows) > 2  # the interval itself is unclipped in the tables
    plot_sensitivity(rows, tmp_path / "s.png", kinds=("shuffle",), error="ci", chance=0.1)
    ax = figures[0].axes[0]
    assert ax.get_ylim() == (0.0, 1.0)
    bars = [seg for c in ax.collections if isinstance(c, LineCollection) for seg in c.get_segments()]
    assert bars and all(0.0 <= y <= 1.0 for seg in bars for _, y in seg)
    assert any(line.get_label() == "chance (1/classes)" and line.get_ydata()[0] == 0.1 for line in ax.lines)


def test_one_seed_draws_no_interval_bars(monkeypatch, tmp_path):
    figures = _capture(monkeypatch, sensitivity_plots)
    plot_sensitivity(sweep_means(_sweep(0, 0.9)), tmp_path / "s.png", kinds=("shuffle",), error="ci")
    assert not [c for c in figures[0].axes[0].collections if isinstance(c, LineCollection)]


def test_attention_maps_share_one_scale_with_a_colour_bar(monkeypatch, tmp_path):
    figures = _capture(monkeypatch, study_plots)
    maps = {"vit_micro_patch4": [torch.rand(1, 4, 4) * 0.2, torch.rand(1, 4, 4)]}
    study_plots.plot_attention_maps(torch.rand(1, 1, 16, 16), maps, (2, 2), tmp_path / "maps.png")
    fig = figures[0]
    labels = [ax.get_ylabel() for ax in fig.axes]
    assert "attention weight (mean over heads)" in labels
    images = [im for ax in fig.axes for im in ax.get_images()][1:]  # the maps, after the input image
    assert {im.get_clim() for im in images} == {(0.0, float(max(m.max() for m in maps["vit_micro_patch4"])))}


def test_sample_grids_label_their_rows_with_the_classes(tmp_path):
    from matplotlib.image import imread

    from spatialvit.data import load_dataset

    info = load_dataset("digits", "test", 8).info
    assert class_names(info) == [str(k) for k in range(10)]
    images = torch.rand(20, 1, 8, 8)
    bare = imread(save_image_grid(images, tmp_path / "bare.png", ncol=2))
    labelled = imread(save_image_grid(images, tmp_path / "labelled.png", ncol=2, row_labels=class_names(info)))
    assert labelled.shape[0] == bare.shape[0] and labelled.shape[1] > bare.shape[1]  # a margin for the labels
