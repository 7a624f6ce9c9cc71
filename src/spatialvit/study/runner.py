"""Run a study: train (or load, or resume) each model once per seed, sweep its sensitivity, probe its attention,
summarise over seeds (mean ± Student-t CI, paired differences, the papers' claims), write a report.

Outputs under ``config.out`` (see ``docs/study.md``): ``runs/<model>/seed<k>/`` (training runs), ``comparison.*``
(per model, mean and CI over seeds), ``comparison_seeds.*`` (per model and seed), ``differences.*`` (paired, against
the plain ViT and the CNN), ``claims.*``, ``sweep.*``/``summary.*`` (sensitivity, per seed), ``attention_distance.*``,
``association.*``, the PNGs, ``report.md`` and ``report.html``.
Progress goes to the ``spatialvit.study`` logger (one line per stage, with the time taken and an ETA).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Subset

from .._text import plural
from ..bench import time_call
from ..catalog import positional_mixers, role_of_mixer
from ..data import DatasetInfo, cached_datasets, load_dataset
from ..data.synthetic import SyntheticConfig, make_partition, split_spec
from ..models import create_model, model_defaults
from ..probes import sensitivity_sweep
from ..probes.association import association_report, vit_attention_matrix
from ..probes.attention_maps import grid_attention_maps, has_attention_maps, mean_attention_distance
from ..probes.plots import plot_sensitivity
from ..probes.priors import has_prior, prior_attention_distance, rate_spread
from ..probes.sweep import SensitivityResult
from ..report.stats import differences, summarise
from ..report.tables import save_table
from ..runtime import claim_outputs, is_main_process, resolve_device, split_classifier, with_normalize
from ..train.checkpoint import model_from_checkpoint, same_data, trained_on
from .adaptive import Ledger, Round, claim_state, model_costs, plan_round
from .claims import CLAIMS, Rule, evaluate_claims, expand, validity
from .config import StudyConfig
from .executors import Executor, InTurn, ProcessPool
from .plots import plot_attention_distance, plot_attention_maps
from .provenance import check_checkpoints, failed_start
from .report import build_report, cost_section, sweep_means

log = logging.getLogger(__name__)

# Per-seed columns that are summarised over seeds (mean ± CI); the wall-clock ones vary between runs, everything
# else is fixed by the seed.
MEASURES = (
    "test_acc1",
    "clean_acc1",
    "ssi_shuffle",
    "ssi_mask",
    "ssi_at_chance",
    "flip_shuffle",
    "flip_mask",
    "attn_dist_px",
    "prior_dist_px",
    "rate_spread",
    "assoc_mass",
    "assoc_auc",
)
# Per claim grid G ("8x8"): the chance-normalised drop (clean - perturbed) / (clean - chance) under shuffles and
# masks (masks: mean over the ratios); 0 = unaffected, 1 = down to chance.
DROPS = ("shuffle_drop", "mask_drop")
COLUMNS = ("model", "source", "params", "epochs", "seeds", *MEASURES)
WALL_CLOCK = ("train_time_s", "train_img_s", "infer_img_s")
# Columns compared between models as paired (same-seed) differences.
DIFFERENCES = ("test_acc1", "ssi_shuffle", "ssi_mask", "flip_shuffle", "flip_mask", "attn_dist_px")
# Mixers whose attention is (partly) a learned function of patch positions: their patch association is measured.
POSITIONAL_MIXERS = positional_mixers()
# The claims' roles of the ViT families, by their mixer; the CNN role is any ResNet.
ROLE_OF_MIXER = role_of_mixer()
# Everything a study writes into its folder.
STUDY_FILES = (
    "study_config.yaml",
    "runs",
    "comparison.*",
    "comparison_seeds.*",
    "differences.*",
    "claims.*",
    "sweep.*",
    "summary.*",
    "attention_distance.*",
    "association.*",
    "sensitivity.png",
    "attention_distance.png",
    "attention_maps.png",
    "cost.*",
    "adaptive.json",
    "report.md",
    "report.html",
)


@dataclass
class StudyResult:
    """The study's tables and where it wrote them: ``comparison`` (per model, over seeds), ``per_seed`` (per model
    and seed), ``differences``, ``claims``, the sweeps, attention distances and association rows."""

    out: Path
    comparison: list[dict[str, Any]]
    per_seed: list[dict[str, Any]]
    differences: list[dict[str, Any]]
    claims: list[dict[str, Any]]
    sensitivity: list[SensitivityResult]
    attention_distance: list[dict[str, Any]]
    association: list[dict[str, Any]]
    files: dict[str, Path]


@dataclass
class _Probe:
    """The data every model is analysed on: the sweep's loader, the probe images, classes and the device."""

    loader: DataLoader
    images: torch.Tensor
    num_classes: int
    device: torch.device


@dataclass
class _Analysis:
    """The rows the study collects over its (model, seed) runs."""

    per_seed: list[dict[str, Any]] = field(default_factory=list)
    sweeps: list[tuple[int, SensitivityResult]] = field(default_factory=list)
    distances: list[dict[str, Any]] = field(default_factory=list)
    associations: list[dict[str, Any]] = field(default_factory=list)
    examples: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    query: tuple[int, int] | None = None
    costs: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("data", "training", "analysis"), 0.0))


def run_study(config: StudyConfig) -> StudyResult | None:
    """Run the study described by ``config``: first obtain every (model, seed) checkpoint (training them in turn;
    under ``torchrun`` all ranks train together), then analyse them on the main process. Returns ``None`` on
    non-zero ranks. The data is read once (:func:`~spatialvit.data.cached_datasets`): the runs trained here and in
    the worker processes forked from here share it."""
    with cached_datasets():
        t0 = time.perf_counter()
        if config.executor == "local" and not config.checkpoints:  # loaded before the workers fork
            load_dataset(config.data, "train", config.img_size)
        return _run_study(config, time.perf_counter() - t0)


def _run_study(config: StudyConfig, data_s: float) -> StudyResult | None:
    out = Path(config.out)
    main = is_main_process()
    check_checkpoints(config)
    if main and not config.resume:  # the leftovers of a study that failed before its first run do not block
        claim_outputs(out, STUDY_FILES, overwrite=config.overwrite or failed_start(out), resume_flag="--resume")
    if main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "study_config.yaml").write_text(yaml.safe_dump(config.ran(), sort_keys=False))
    started = time.perf_counter()
    ledger = Ledger.load(out) if config.until_resolved else None
    probe = _probe_data(config)
    data_s += time.perf_counter() - started
    runs = _obtain_runs(config, ledger.runs() if ledger else [])
    trained_s = time.perf_counter() - started
    if not main:
        return None
    analysis = _Analysis(query=tuple(config.probes.query) if config.probes.query else None)
    analysis.phases |= {"data": data_s, "training": trained_s - data_s}
    t0 = time.perf_counter()
    for run in runs:
        log.info("== analysing %s, seed %d (%s)", run.model, run.seed, run.path)
        _analyse(config, analysis, probe, name=run.model, seed=run.seed, path=run.path, source=run.source)
    analysis.phases["analysis"] += time.perf_counter() - t0
    if ledger is not None:
        if not ledger.rounds:  # a pilot found on disk counts with its recorded training time
            recorded = sum(r["train_s"] or 0.0 for r in analysis.costs) / config.workers
            ledger.spent_s += max(0.0, recorded - trained_s)
        _adapt(config, analysis, probe, ledger, started)
    log.info("== writing tables, plots and the report to %s", out)
    return _write(config, analysis, probe, ledger)


def _adapt(config: StudyConfig, analysis: _Analysis, probe: _Probe, ledger: Ledger, started: float) -> None:
    """The rounds of an adaptive study (:mod:`.adaptive`): look at the claims (sequential rule), train the next
    seeds the plan asks for, analyse them, until the plan stops; the ledger is saved after every round."""
    out = Path(config.out)

    def look() -> list[dict[str, Any]]:
        return derive_tables(analysis.per_seed, config.models, config.claim_grid_labels, "sequential")[2]

    def tick() -> None:
        nonlocal started
        now = time.perf_counter()
        ledger.spent_s += now - started
        started = now

    claims = look()
    if not ledger.rounds:
        pilot = [[r["model"], r["seed"]] for r in analysis.per_seed]
        ledger.rounds.append(Round(pilot, [], time.perf_counter() - started, claim_state(claims)))
    while True:
        tick()
        remaining = None if config.budget_s is None else config.budget_s - ledger.spent_s
        have = {(r["model"], r["seed"]) for r in analysis.per_seed}
        plan = plan_round(claims, have, config.seed_sequence, model_costs(analysis.costs), workers=config.workers,
                          remaining_s=remaining)  # fmt: skip
        if plan.stop is not None:
            ledger.stopped = plan.stop
            ledger.save(out)
            log.info("== adaptive study stopped after %s (%.0f s): %s", plural(len(ledger.rounds) - 1, "round"),
                     ledger.spent_s, plan.stop)  # fmt: skip
            return
        log.info("== round %d: %s for claims %s (about %.0f s; %s)", len(ledger.rounds),
                 ", ".join(f"{m} seed {s}" for m, s in plan.jobs), ", ".join(plan.claims), plan.seconds,
                 "no budget" if remaining is None else f"{remaining:.0f} s left")  # fmt: skip
        t0 = time.perf_counter()
        with open_executor(config) as executor:
            trained = executor.train([config.train_config(m, s) for m, s in plan.jobs])
        t1 = time.perf_counter()
        for run in sorted(trained, key=lambda r: (config.models.index(r.model), r.seed)):
            _analyse(config, analysis, probe, name=run.model, seed=run.seed, path=run.checkpoint, source="trained")
        analysis.phases["training"] += t1 - t0
        analysis.phases["analysis"] += time.perf_counter() - t1
        claims = look()
        ledger.rounds.append(
            Round([list(j) for j in plan.jobs], plan.claims, time.perf_counter() - t0, claim_state(claims))
        )
        tick()
        ledger.stopped = None
        ledger.save(out)


def _probe_data(config: StudyConfig) -> _Probe:
    """The test split (first ``sensitivity.limit`` images) as a loader, and the first ``probes.images`` of it."""
    test_set = load_dataset(config.data, "test", config.img_size)
    num_classes = test_set.info.num_classes
    s = config.sensitivity
    if s.limit is not None:
        test_set = Subset(test_set, range(min(s.limit, len(test_set))))
    n_probe = min(config.probes.images, len(test_set))
    images = torch.stack([test_set[i][0] for i in range(n_probe)])
    loader = DataLoader(test_set, s.batch_size, shuffle=False)
    return _Probe(loader, images, num_classes, resolve_device(config.train.device))


@contextmanager
def open_executor(config: StudyConfig) -> Iterator[Executor]:
    """The executor of ``config``: a Ray cluster (``executor: ray``, joined or started here and left when the block
    ends), ``workers`` forked processes (on a CPU, outside ``torchrun``), or one run after another."""
    if config.executor == "ray":
        from .ray_executor import RayExecutor

        with RayExecutor.connect(config.address, Path(config.out)) as executor:
            yield executor
        return
    alone = int(os.environ.get("WORLD_SIZE", "1")) == 1  # under torchrun every rank trains each run together
    if config.workers > 1 and alone and resolve_device(config.train.device).type == "cpu":
        yield ProcessPool(config.workers)
    else:
        yield InTurn()


class Run(NamedTuple):
    """One run of the study: its model, seed, checkpoint and where it comes from (``trained`` or ``checkpoint``)."""

    model: str
    seed: int
    path: Path
    source: str


def _obtain_runs(config: StudyConfig, more: list[tuple[str, int]]) -> list[Run]:
    """The :class:`Run` of every model and seed: a given checkpoint (used as the model's only seed), or
    the last checkpoint of training the model with that seed (reusing a finished or interrupted run), trained by
    the executor of ``config`` (:mod:`.executors`); ``more``: the runs an adaptive study added before."""
    jobs = [config.train_config(name, seed) for name in config.models for seed in config.seeds
            if name not in config.checkpoints]  # fmt: skip
    jobs += [config.train_config(name, seed) for name, seed in more]
    runs = [Run(name, config.seeds[0], Path(path), "checkpoint") for name, path in config.checkpoints.items()]
    trained = []
    if jobs:
        with open_executor(config) as executor:
            trained = executor.train(jobs)
    runs += [Run(name, seed, path, "trained") for name, seed, path, _ in trained]
    order = {name: k for k, name in enumerate(config.models)}
    return sorted(runs, key=lambda r: (order[r.model], r.seed))


def _load(path: Path) -> tuple[nn.Module, list[dict[str, Any]], dict[str, Any]]:
    """``(classifier on [0, 1] pixels, training history, checkpoint)``. Trained models are loaded from their
    checkpoint too, so a fresh run and a reused one give the same numbers."""
    model, info, ckpt = model_from_checkpoint(path)
    return with_normalize(model, info.mean, info.std).eval(), list(ckpt.get("metrics", [])), ckpt


def _prior_distance(ckpt: dict[str, Any], x: torch.Tensor, device: torch.device) -> float | None:
    """Mean attention distance of the checkpoint's architecture at initialisation with content-free logits (its
    bias alone: :func:`~spatialvit.probes.priors.prior_attention_distance`); ``None`` where it is not defined."""
    info = DatasetInfo.from_dict(ckpt["data_info"])
    fresh = with_normalize(create_model(ckpt["model_name"], **ckpt["model_kwargs"]), info.mean, info.std)
    fresh = fresh.to(device).eval()
    return float(prior_attention_distance(fresh, x).mean()) if has_prior(fresh) else None


def grid_drops(sweep_rows: list[dict[str, Any]], grids: list[str], chance: float) -> dict[str, float | None]:
    """Per grid label G of ``grids`` and kind: ``{kind}_drop_{G}``, the chance-normalised drop (clean − perturbed)
    / (clean − chance) of one model's sweep rows (masks: mean over the ratios at G); ``None`` where the sweep has no
    setting at G or the clean accuracy is at chance."""
    clean = next(r["acc1"] for r in sweep_rows if r["kind"] == "clean")
    out: dict[str, float | None] = {}
    for kind in ("shuffle", "mask"):
        for grid in grids:
            accs = [r["acc1"] for r in sweep_rows if r["kind"] == kind and r["grid"] == grid]
            ok = accs and clean - chance > 0
            out[f"{kind}_drop_{grid}"] = sum((clean - a) / (clean - chance) for a in accs) / len(accs) if ok else None
    return out


def _analyse(
    config: StudyConfig, analysis: _Analysis, probe: _Probe, name: str, seed: int, path: Path, source: str
) -> None:
    """Sweep, attention distance and maps, and patch association of one run; adds its rows to ``analysis``."""
    t0 = time.perf_counter()
    clf, history, ckpt = _load(path)
    clf = clf.to(probe.device)
    res = sensitivity_sweep(
        clf,
        probe.loader,
        normalize=None,
        config=config.sensitivity,
        seed=seed,
        name=name,
        device=probe.device,
        progress=config.progress,
    )
    analysis.sweeps.append((seed, res))
    summary = res.summary()
    row: dict[str, Any] = {"model": name, "seed": seed, "source": source}
    row |= {"params": sum(p.numel() for p in clf.parameters()), "epochs": len(history) or None}
    # top-1 on the whole test split from the run's own final evaluation (none for a checkpoint scored on other data:
    # that evaluation was on its training data); clean_acc1: on the images the sweep used
    last = history[-1] if history and same_data(trained_on(ckpt)["data"], config.data) else {}
    row["test_acc1"] = last.get("test_top1")
    row |= {"clean_acc1": res.clean_acc1}
    row |= {k: summary.get(k) for k in ("ssi_shuffle", "ssi_mask")}
    # SSI of a model that falls to chance (1/classes) under every perturbation: the scale's top for this model.
    row["ssi_at_chance"] = 1 - (1 / probe.num_classes) / res.clean_acc1 if res.clean_acc1 > 0 else None
    row |= {k: summary.get(k) for k in ("flip_shuffle", "flip_mask")}
    row["chance_acc1"] = 1 / probe.num_classes
    row |= grid_drops(res.rows(), config.claim_grid_labels, 1 / probe.num_classes)
    t1 = time.perf_counter()
    x = probe.images.to(probe.device)
    row |= _attention(config, analysis, clf, x=x, name=name, seed=seed)
    row["prior_dist_px"] = _prior_distance(ckpt, x, probe.device)
    row["rate_spread"] = rate_spread(clf, x)
    row["train_time_s"] = sum(h.get("epoch_time_s", 0.0) for h in history) if history else None
    row["train_img_s"] = sum(h["img_per_s"] for h in history) / len(history) if history else None
    with torch.no_grad():
        row["infer_img_s"] = len(x) / time_call(lambda clf=clf, x=x: clf(x), probe.device, repeats=3)
    analysis.per_seed.append(row)
    t2 = time.perf_counter()
    analysis.costs.append({"model": name, "seed": seed, "train_s": row["train_time_s"],
                           "train_img_s": row["train_img_s"], "sweep_s": t1 - t0, "probes_s": t2 - t1,
                           "analyse_s": t2 - t0})  # fmt: skip
    log.info("[%s, seed %d] clean top-1 %.3f, shuffle SSI %s, mask SSI %s", name, seed, res.clean_acc1,
             _fmt(row["ssi_shuffle"]), _fmt(row["ssi_mask"]))  # fmt: skip


def _attention(
    config: StudyConfig, analysis: _Analysis, clf: nn.Module, x: torch.Tensor, name: str, seed: int
) -> dict[str, Any]:
    """Mean attention distance (and, for the first seed, the example maps) and the patch association of the
    positional layers: adds their rows to ``analysis``; returns the run's attention columns."""
    cells: dict[str, Any] = {"attn_dist_px": None, "assoc_mass": None, "assoc_auc": None}
    if has_attention_maps(clf):
        dist = mean_attention_distance(clf, x)
        analysis.distances += [
            {"model": name, "seed": seed, "layer": la, "head": h, "distance_px": float(dist[la, h])}
            for la in range(dist.shape[0])
            for h in range(dist.shape[1])
        ]
        cells["attn_dist_px"] = float(dist.mean())
        if name not in analysis.examples:
            grid = tuple(v // clf[-1].patch_size for v in x.shape[-2:])
            analysis.query = analysis.query or (grid[0] // 2, grid[1] // 2)
            analysis.examples[name] = _query_maps(clf, x[: config.probes.example_images], analysis.query)
    if assoc := association_rows(clf, x, config.data, name):
        analysis.associations += [{"model": name, "seed": seed, **{k: v for k, v in r.items() if k != "model"}}
                                  for r in assoc]  # fmt: skip
        cells["assoc_mass"] = sum(r["mass"] for r in assoc) / len(assoc)
        cells["assoc_auc"] = sum(r["auc"] for r in assoc) / len(assoc)
    return cells


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
    return make_partition(cfg), cfg.grid, f"{what} ({plural(cfg.num_groups, 'group')} of {cfg.group_size})"


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


def roles(models: list[str]) -> dict[str, str]:
    """The claims' roles (``cnn``, ``plain``, ``conv_qkv``, ``positional``, ``decay``, ``sdt``) of the study's
    models: a ResNet is the CNN, a plain-ViT family member takes the role of its mixer; the first model wins."""
    out: dict[str, str] = {}
    for name in models:
        defaults = model_defaults(name)
        if name.startswith("resnet"):
            out.setdefault("cnn", name)
        elif "patch_size" in defaults and defaults.get("attn_layer") in ROLE_OF_MIXER:
            out.setdefault(ROLE_OF_MIXER[defaults["attn_layer"]], name)
    return out


def derive_tables(
    per_seed: list[dict[str, Any]], models: list[str], grids: list[str], rule: Rule = "fixed"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """``(comparison, differences, claims, invalid)`` from the per-seed rows of ``models`` with claim ``grids``
    (``"8x8"``): the summaries over seeds, the paired differences against the plain ViT and the CNN, the claims with
    their verdicts (:mod:`.claims`), and the models that fail the validity gate with the reason (on test accuracy,
    or on the swept images' where a run has no test accuracy). Everything the study's tables hold beyond the per-seed
    rows comes from here."""
    drops = [f"{kind}_{grid}" for kind in DROPS for grid in grids]
    comparison = summarise(per_seed, [*MEASURES, *drops, *WALL_CLOCK])
    for row in comparison:
        row["seeds"] = sum(r["model"] == row["model"] for r in per_seed)
    role = roles(models)
    diffs = [d for ref in dict.fromkeys([role.get("plain"), role.get("cnn")]) if ref for d in
             differences(per_seed, [*DIFFERENCES, *drops], ref)]  # fmt: skip
    accuracy = [{"model": r["model"], "seed": r["seed"], "acc1": r["test_acc1"] if r.get("test_acc1") is not None
                 else r.get("clean_acc1")} for r in per_seed]  # fmt: skip
    invalid = validity(accuracy, per_seed[0]["chance_acc1"], "acc1") if per_seed else {}
    claims = evaluate_claims(expand(CLAIMS, grids), per_seed, role, invalid, rule)
    return comparison, diffs, claims, invalid


def _write(config: StudyConfig, analysis: _Analysis, probe: _Probe, ledger: Ledger | None) -> StudyResult:
    """Summaries over seeds, the tables, the plots and the report (rows in model, then seed order)."""
    out = Path(config.out)
    order = {name: k for k, name in enumerate(config.models)}
    analysis.sweeps.sort(key=lambda sr: (order[sr[1].model], sr[0]))
    for rows in (analysis.per_seed, analysis.distances, analysis.associations, analysis.costs):
        rows.sort(key=lambda r: (order[r["model"]], r["seed"]))
    per_seed = analysis.per_seed
    rule: Rule = "sequential" if config.until_resolved else "fixed"
    comparison, diffs, claims, invalid = derive_tables(per_seed, config.models, config.claim_grid_labels, rule)
    files = {f"comparison_{k}": v for k, v in save_table(comparison, out, "comparison").items()}
    files |= {f"comparison_seeds_{k}": v for k, v in save_table(per_seed, out, "comparison_seeds").items()}
    if diffs:
        files |= {f"differences_{k}": v for k, v in save_table(diffs, out, "differences").items()}
    if claims:
        files |= {f"claims_{k}": v for k, v in save_table(claims, out, "claims").items()}
    sweep_rows = [{"seed": seed, **r} for seed, res in analysis.sweeps for r in res.rows()]
    files |= {f"sweep_{k}": v for k, v in save_table(sweep_rows, out, "sweep").items()}
    summaries = [{"seed": seed, **res.summary()} for seed, res in analysis.sweeps]
    files |= {f"summary_{k}": v for k, v in save_table(summaries, out, "summary").items()}
    # error bars: the 95 % CI over seeds, drawn with two seeds or more (none for one seed)
    files["sensitivity_png"] = plot_sensitivity(
        sweep_means(sweep_rows), out / "sensitivity.png", error="ci", chance=1 / probe.num_classes
    )
    if analysis.distances:
        tables = save_table(analysis.distances, out, "attention_distance")
        files |= {f"attention_distance_{k}": v for k, v in tables.items()}
        files["attention_distance_png"] = plot_attention_distance(analysis.distances, out / "attention_distance.png")
        files["attention_maps_png"] = plot_attention_maps(
            probe.images[: config.probes.example_images], analysis.examples, analysis.query, out / "attention_maps.png"
        )
    if analysis.associations:
        files |= {f"association_{k}": v for k, v in save_table(analysis.associations, out, "association").items()}
    files |= {f"cost_{k}": v for k, v in save_table(analysis.costs, out, "cost").items()}
    report = build_report(
        config,
        comparison,
        diffs,
        claims=claims,
        invalid=invalid,
        distances=analysis.distances,
        associations=analysis.associations,
        files=files,
    )
    cost_section(report, config=config, costs=analysis.costs, ledger=ledger, claims=claims, phases=analysis.phases)
    files |= report.save(out)
    sweeps = [res for _, res in analysis.sweeps]
    return StudyResult(
        out=out,
        comparison=comparison,
        per_seed=per_seed,
        differences=diffs,
        claims=claims,
        sensitivity=sweeps,
        attention_distance=analysis.distances,
        association=analysis.associations,
        files=files,
    )


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"
