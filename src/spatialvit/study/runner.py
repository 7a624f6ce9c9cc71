"""Run a study: train (or load, or resume) each model, sweep its sensitivity, probe its attention, write a report.

Outputs under ``config.out`` (see ``docs/study.md``): ``runs/<model>/`` (training runs), ``comparison.*``,
``sweep.*``/``summary.*`` (sensitivity), ``attention_distance.*``, ``association.*`` (positional layers), the
PNGs, ``report.md`` and ``report.html``.
Progress goes to the ``spatialvit.study`` logger (one line per stage) and tqdm bars.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..bench import time_call
from ..data import load_dataset
from ..data.synthetic import SyntheticConfig, make_partition, split_spec
from ..probes import save_comparison, sensitivity_sweep
from ..probes.association import association_report, vit_attention_matrix
from ..probes.attention_maps import grid_attention_maps, has_attention_maps, mean_attention_distance
from ..probes.sensitivity import SensitivityResult
from ..report.document import Report
from ..report.sensitivity_plots import plot_sensitivity
from ..report.tables import save_table
from ..runtime import claim_outputs, is_main_process, resolve_device, split_classifier, with_normalize
from ..train.checkpoint import model_from_checkpoint
from ..train.loop import fit
from .config import StudyConfig
from .plots import plot_attention_distance, plot_attention_maps

log = logging.getLogger(__name__)

# Columns of comparison.* ; the wall-clock ones vary between runs, everything else is fixed by the seed.
COLUMNS = (
    "model",
    "source",
    "params",
    "epochs",
    "clean_acc1",
    "ssi_shuffle",
    "ssi_mask",
    "flip_shuffle",
    "flip_mask",
    "attn_dist_px",
    "assoc_mass",
    "assoc_auc",
)
# Mixers whose attention is (partly) a learned function of patch positions: their patch association is measured.
POSITIONAL_MIXERS = ("positional", "gpsa")
WALL_CLOCK = ("train_time_s", "train_img_s", "infer_img_s")
# Everything a study writes into its folder.
STUDY_FILES = (
    "study_config.yaml",
    "runs",
    "comparison.*",
    "sweep.*",
    "summary.*",
    "attention_distance.*",
    "association.*",
    "sensitivity.png",
    "attention_distance.png",
    "attention_maps.png",
    "report.md",
    "report.html",
)


@dataclass
class StudyResult:
    """The study's tables and where it wrote them."""

    out: Path
    comparison: list[dict[str, Any]]
    sensitivity: list[SensitivityResult]
    attention_distance: list[dict[str, Any]]
    association: list[dict[str, Any]]
    files: dict[str, Path]


def _checkpoint(config: StudyConfig, name: str) -> tuple[Path, str]:
    """``(checkpoint path, source)``: the given checkpoint, or the last one of training ``name`` (which reuses a
    finished or interrupted run in ``out/runs/<name>``)."""
    if name in config.checkpoints:
        return Path(config.checkpoints[name]), "checkpoint"
    train = config.train_config(name)
    done = Path(train.out) / "last.pt"
    log.info(
        "[%s] %s (%d epochs) in %s", name, "checking run" if done.is_file() else "training", train.epochs, train.out
    )
    return fit(train).last_checkpoint, "trained"


def _load(path: Path) -> tuple[nn.Module, list[dict[str, Any]]]:
    """``(classifier on [0, 1] pixels, training history)``. Trained models are loaded from their checkpoint too,
    so a fresh run and a reused one give the same numbers."""
    model, info, ckpt = model_from_checkpoint(path)
    return with_normalize(model, info.mean, info.std).eval(), list(ckpt.get("metrics", []))


def _attention_rows(name: str, dist: torch.Tensor) -> list[dict[str, Any]]:
    return [
        {"model": name, "layer": la, "head": h, "distance_px": float(dist[la, h])}
        for la in range(dist.shape[0])
        for h in range(dist.shape[1])
    ]


def _query_maps(clf: nn.Module, images: torch.Tensor, query: tuple[int, int]) -> list[torch.Tensor]:
    """Per layer, the query token's attention over the grid, mean over heads: ``[n, gh, gw]``."""
    vit = clf[-1]
    gh, gw = (s // vit.patch_size for s in images.shape[-2:])
    q = query[0] * gw + query[1]
    return [a[:, :, q, :].mean(1).reshape(-1, gh, gw).cpu() for a in grid_attention_maps(clf, images)]


def reference_partition(data: str, token_grid: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int], str]:
    """``(group id per patch [D], patch grid, description)`` that association is measured against: the task's own
    partition on ``synthetic`` data, otherwise the local 2x2 blocks of the token grid."""
    name, _, options = data.partition(":")
    cfg = SyntheticConfig.from_string(split_spec(options)[0]) if name == "synthetic" else None
    what = f"the synthetic task's {cfg.partition} partition" if cfg else "local 2x2 blocks of the token grid"
    cfg = cfg or SyntheticConfig(grid=token_grid, group=(2, 2), partition="local")
    return make_partition(cfg), cfg.grid, f"{what} ({cfg.num_groups} groups of {cfg.group_size})"


def association_rows(clf: nn.Module, images: torch.Tensor, data: str, name: str) -> list[dict[str, Any]]:
    """Patch association (``spatialvit.probes.association``) of every positional block of the ViT in ``clf``:
    its grid attention averaged over heads and ``images`` (pixel space), against :func:`reference_partition`.
    One row per positional block; none for other models."""
    pre, vit = split_classifier(clf)
    mixers = getattr(vit, "attn_layers", [])
    blocks = [i for i, m in enumerate(mixers) if m in POSITIONAL_MIXERS]
    if not blocks:
        return []
    groups, grid, reference = reference_partition(
        data, (images.shape[-2] // vit.patch_size, images.shape[-1] // vit.patch_size)
    )
    x = pre(images)
    rows = []
    for i in blocks:
        metrics = association_report(vit_attention_matrix(vit, x, i, grid), groups)
        rows.append({"model": name, "layer": i, "mixer": mixers[i], "reference": reference, **metrics})
    return rows


@dataclass
class _Probe:
    """The data every model is analysed on: the sweep's loader, the probe images and the device."""

    loader: DataLoader
    images: torch.Tensor
    device: torch.device


@dataclass
class _Analysis:
    """The tables the study collects over its models."""

    comparison: list[dict[str, Any]] = field(default_factory=list)
    sweeps: list[SensitivityResult] = field(default_factory=list)
    distances: list[dict[str, Any]] = field(default_factory=list)
    associations: list[dict[str, Any]] = field(default_factory=list)
    examples: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    query: tuple[int, int] | None = None


def run_study(config: StudyConfig) -> StudyResult | None:
    """Run the study described by ``config``: first obtain every model (training them in turn; under ``torchrun``
    all ranks train together), then analyse them on the main process. Returns ``None`` on non-zero ranks."""
    out = Path(config.out)
    main = is_main_process()
    if main and not config.resume:
        claim_outputs(out, STUDY_FILES, overwrite=config.overwrite, resume_flag="--resume")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "study_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    probe = _probe_data(config)
    checkpoints = {}
    for i, name in enumerate(config.models, 1):
        log.info("== model %d/%d: %s", i, len(config.models), name)
        checkpoints[name] = _checkpoint(config, name)
    if not main:
        return None
    analysis = _Analysis(query=tuple(config.probes.query) if config.probes.query else None)
    for name, (path, source) in checkpoints.items():
        log.info("== analysing %s (%s)", name, path)
        _analyse(config, analysis, probe, name, path, source)
    log.info("== writing tables, plots and the report to %s", out)
    files = _write_tables_and_plots(config, analysis, probe)
    files |= _report(config, analysis.comparison, analysis.distances, analysis.associations, files).save(out)
    return StudyResult(out, analysis.comparison, analysis.sweeps, analysis.distances, analysis.associations, files)


def _probe_data(config: StudyConfig) -> _Probe:
    """The test split (first ``sensitivity.limit`` images) as a loader, and the first ``probes.images`` of it."""
    test_set = load_dataset(config.data, "test", config.img_size)
    s = config.sensitivity
    if s.limit is not None:
        test_set = Subset(test_set, range(min(s.limit, len(test_set))))
    n_probe = min(config.probes.images, len(test_set))
    images = torch.stack([test_set[i][0] for i in range(n_probe)])
    loader = DataLoader(test_set, s.batch_size, shuffle=False)
    return _Probe(loader, images, resolve_device(config.train.device))


def _analyse(config: StudyConfig, analysis: _Analysis, probe: _Probe, name: str, path: Path, source: str) -> None:
    """Sweep, attention distance and maps, and patch association of one model; adds its rows to ``analysis``."""
    clf, history = _load(path)
    clf = clf.to(probe.device)
    log.info("[%s] sensitivity sweep", name)
    res = sensitivity_sweep(
        clf,
        probe.loader,
        normalize=None,
        config=config.sensitivity,
        seed=config.seed,
        name=name,
        device=probe.device,
        progress=config.progress,
    )
    analysis.sweeps.append(res)
    summary = res.summary()
    row: dict[str, Any] = {"model": name, "source": source, "params": sum(p.numel() for p in clf.parameters())}
    row |= {"epochs": len(history) or None, "clean_acc1": res.clean_acc1}
    row |= {k: summary.get(k) for k in ("ssi_shuffle", "ssi_mask", "flip_shuffle", "flip_mask")}
    row["attn_dist_px"] = None
    x = probe.images.to(probe.device)
    if has_attention_maps(clf):
        log.info("[%s] attention distance and maps", name)
        dist = mean_attention_distance(clf, x)
        analysis.distances += _attention_rows(name, dist)
        row["attn_dist_px"] = float(dist.mean())
        grid = tuple(v // clf[-1].patch_size for v in x.shape[-2:])
        analysis.query = analysis.query or (grid[0] // 2, grid[1] // 2)
        analysis.examples[name] = _query_maps(clf, x[: config.probes.example_images], analysis.query)
    row["assoc_mass"] = row["assoc_auc"] = None
    if assoc := association_rows(clf, x, config.data, name):
        log.info("[%s] patch association of %d positional layers", name, len(assoc))
        analysis.associations += assoc
        row["assoc_mass"] = sum(r["mass"] for r in assoc) / len(assoc)
        row["assoc_auc"] = sum(r["auc"] for r in assoc) / len(assoc)
    row["train_time_s"] = sum(h.get("epoch_time_s", 0.0) for h in history) if history else None
    row["train_img_s"] = sum(h["img_per_s"] for h in history) / len(history) if history else None
    with torch.no_grad():
        row["infer_img_s"] = len(x) / time_call(lambda clf=clf, x=x: clf(x), probe.device, repeats=3)
    analysis.comparison.append(row)
    log.info(
        "[%s] clean top-1 %.3f, shuffle SSI %s, mask SSI %s",
        name,
        res.clean_acc1,
        _fmt(row["ssi_shuffle"]),
        _fmt(row["ssi_mask"]),
    )


def _write_tables_and_plots(config: StudyConfig, analysis: _Analysis, probe: _Probe) -> dict[str, Path]:
    """comparison.*, sweep.*/summary.*, attention_distance.*, association.* and the PNGs; returns the paths."""
    out = Path(config.out)
    files = {f"comparison_{k}": v for k, v in save_table(analysis.comparison, out, "comparison").items()}
    files |= save_comparison(analysis.sweeps, out)
    sweep_rows = [r for res in analysis.sweeps for r in res.rows()]
    files["sensitivity_png"] = plot_sensitivity(sweep_rows, out / "sensitivity.png")
    if analysis.distances:
        tables = save_table(analysis.distances, out, "attention_distance")
        files |= {f"attention_distance_{k}": v for k, v in tables.items()}
        files["attention_distance_png"] = plot_attention_distance(analysis.distances, out / "attention_distance.png")
        files["attention_maps_png"] = plot_attention_maps(
            probe.images[: config.probes.example_images], analysis.examples, analysis.query, out / "attention_maps.png"
        )
    if analysis.associations:
        files |= {f"association_{k}": v for k, v in save_table(analysis.associations, out, "association").items()}
    return files


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _report(
    config: StudyConfig,
    comparison: list[dict[str, Any]],
    distances: list[dict[str, Any]],
    associations: list[dict[str, Any]],
    files: dict[str, Path],
) -> Report:
    s = config.sensitivity
    epochs = config.train.epochs
    rep = Report(f"spatialvit study: {config.data}")
    rep.paragraph(
        f"Data `{config.data}` (img_size {config.img_size or 'native'}), seed {config.seed}, models trained for "
        f"{epochs} epochs with the shared `train` settings unless loaded from a checkpoint. Sensitivity: block "
        f"shuffles on grids {s.shuffle_grids}, block masks on grids {s.mask_grids or s.shuffle_grids} at ratios "
        f"{s.mask_ratios} ({s.mask_fill} fill), {s.repeats} draws each, on the test split. The full configuration "
        "is in study_config.yaml."
    )
    rep.heading("Comparison")
    rep.table(comparison, [*COLUMNS, *WALL_CLOCK])
    rep.paragraph(
        "clean_acc1: test top-1. ssi_shuffle / ssi_mask: Spatial Sensitivity Index, the mean relative accuracy drop "
        "over the shuffle / mask settings (0: layout ignored, 1: chance-level or worse); flip_*: the mean share of "
        "predictions that change. attn_dist_px: mean attention distance in pixels over layers, heads, queries and "
        f"{config.probes.images} test images. assoc_mass / assoc_auc: patch association of the positional layers "
        "(mean over those layers; blank for models without positional attention, see Patch association). "
        "Wall-clock columns (train_time_s, train_img_s, infer_img_s) depend on "
        "the machine and its load; all other columns are fixed by the seed."
    )
    rep.heading("Sensitivity")
    rep.image(files["sensitivity_png"], "Test top-1 under block shuffles and block masks (one curve per model)")
    if distances:
        rep.heading("Attention")
        layers: dict[tuple[str, int], list[float]] = {}
        for r in distances:
            layers.setdefault((r["model"], r["layer"]), []).append(r["distance_px"])
        rep.table(
            [
                {"model": m, "layer": la, "mean_px": sum(v) / len(v), "min_head_px": min(v), "max_head_px": max(v)}
                for (m, la), v in layers.items()
            ]
        )
        rep.image(files["attention_distance_png"], "Mean attention distance per layer (dots: heads)")
        rep.image(files["attention_maps_png"], "Attention of the outlined query patch per layer (mean over heads)")
    if associations:
        rep.heading("Patch association")
        rep.table(associations)
        chance = associations[0]["chance_mass"]
        rep.paragraph(
            "Each positional layer's attention among grid tokens (heads and "
            f"{config.probes.images} test images averaged) against a reference partition: "
            f"{associations[0]['reference']}. mass: mean attention a query puts on its own group (self included; "
            f"uniform attention gives chance_mass = {chance:.4f}, 1 = all within the group); auc: probability that a "
            "same-group pair outranks a different-group pair (0.5 = chance); top_c: share of each query's C largest "
            "weights inside its group; ari: adjusted Rand index of the partition recovered by spectral clustering "
            "(0 = chance). On natural images there is no hidden ground-truth partition: against local blocks these "
            "numbers measure how local the learned positional attention is. Only on synthetic data, where the "
            "task's true groups are the reference, do they measure whether the true association was learned."
        )
    rep.paragraph(
        "Files: comparison.csv/json/md, summary.* and sweep.* (every sensitivity setting), attention_distance.* "
        "(per layer and head), association.* (per positional layer), runs/<model>/ (checkpoints, metrics, config)."
    )
    return rep
