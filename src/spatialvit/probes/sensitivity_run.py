"""The sensitivity benchmark of several classifiers, end to end: load checkpoints (or timm models), load the data
they were trained on, sweep each one, write the tables and figures (what ``spatialvit sensitivity`` runs).

Without ``data`` the data set comes from the first checkpoint's own training config (with its image size and
normalisation); every checkpoint must have been trained on that data at that size (or ``other_data`` says to score it
elsewhere), and the data must fit every model, or the error says what the model expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .._text import plural
from ..data import DatasetInfo, load_dataset
from ..report.document import Report
from ..runtime import claim_outputs, resolve_device
from .config import SensitivityRunConfig, SweepConfig  # noqa: F401  (re-exported)
from .sweep import SensitivityResult, SettingResult, check_input, save_comparison, sensitivity_sweep

# What a sensitivity run writes into its folder.
SWEEP_FILES = (
    "sweep.*", "summary.*", "sensitivity.png", "shuffle.png", "mask.png", "examples.png", "report.md", "report.html",
)  # fmt: skip


@dataclass
class _Model:
    label: str
    model: nn.Module
    norm: tuple  # (mean, std) the model expects after perturbing
    trained_on: DatasetInfo | None  # None for pretrained timm models
    budget: str = ""  # what the checkpoint was trained on, for how long (empty for timm models)
    other_data: bool = False  # scored on other data than it was trained on (other_data)


def run_sensitivity(config: SensitivityRunConfig) -> tuple[list[SensitivityResult], dict[str, Path]]:
    """Sweep every model of ``config`` on one data set; returns the results and the files written."""
    from ..train.checkpoint import check_data, describe_budget, model_from_checkpoint, trained_on

    if not config.checkpoints and not config.timm_models:
        raise ValueError("give at least one --checkpoint PATH or --timm-model NAME")
    claim_outputs(config.out, SWEEP_FILES, overwrite=config.overwrite)
    models, spec, ckpts = [], config.data, []
    for path in config.checkpoints:
        model, info, ckpt = model_from_checkpoint(path)
        label = _label(path, ckpt["model_name"], {m.label for m in models})
        models.append(_Model(label, model, (info.mean, info.std), info, describe_budget(trained_on(ckpt))))
        ckpts.append((path, ckpt))
        spec = spec or trained_on(ckpt)["data"]  # the data the first model was trained on
    if spec is None:
        raise ValueError("--timm-model alone needs --data: the data set to evaluate on")
    img_size = config.img_size or (models[0].trained_on.img_size[0] if models else None)
    data = load_dataset(spec, split=config.split, img_size=img_size)
    info: DatasetInfo = data.info
    for m, (path, ckpt) in zip(models, ckpts):
        m.other_data = check_data(path, ckpt, spec, info.img_size, other_data=config.other_data)
    for name in config.timm_models:
        model, norm = _timm_classifier(name, config.timm_random_init, info)
        models.append(_Model(_label(name, name, {m.label for m in models}), model, norm, None))
    _check_fit(models, info, spec)
    if config.sweep.limit:
        data = Subset(data, range(min(config.sweep.limit, len(data))))
        data.info = info  # type: ignore[attr-defined]
    loader = DataLoader(data, batch_size=config.sweep.batch_size, shuffle=False)
    device = resolve_device(config.device)
    results = []
    for m in models:
        results.append(
            sensitivity_sweep(
                m.model.to(device),
                loader,
                normalize=m.norm,
                config=config.sweep,
                seed=config.seed,
                name=m.label,
                amp=None if config.amp else False,
                progress=config.progress,
            )
        )
        m.model.cpu()
    return results, _write(config, results, data, models)


def _check_fit(models: list[_Model], info: DatasetInfo, spec: str) -> None:
    """Every model must fit the data before anything runs."""
    image_shape = (info.in_chans, *info.img_size)
    for m in models:
        try:
            check_input(m.model, image_shape)
        except ValueError as err:
            raise ValueError(f"{m.label}: {err}") from None
        if m.trained_on is not None and m.trained_on.num_classes != info.num_classes:
            raise ValueError(
                f"{m.label} was trained for {plural(m.trained_on.num_classes, 'class')} but {spec} has "
                f"{info.num_classes}"
            )


def _write(
    config: SensitivityRunConfig, results: list[SensitivityResult], data: Dataset, models: list[_Model]
) -> dict[str, Path]:
    """sweep.* and summary.*, sensitivity/shuffle/mask PNGs (chance dotted), examples.png, report.md/.html."""
    from .plots import plot_sensitivity

    out = Path(config.out)
    paths = save_comparison(results, out)
    rows = [r for res in results for r in res.rows()]
    chance = 1 / data.info.num_classes
    paths["sensitivity_png"] = plot_sensitivity(rows, out / "sensitivity.png", chance=chance)
    paths["shuffle_png"] = plot_sensitivity(rows, out / "shuffle.png", kinds=("shuffle",), chance=chance)
    if config.sweep.mask_ratios:
        paths["mask_png"] = plot_sensitivity(rows, out / "mask.png", kinds=("mask",), chance=chance)
    if config.examples > 0:
        paths["examples_png"] = _examples(data, results[0].settings, config, out / "examples.png", models[0].norm)
    paths |= _report(config, results, data.info, models, paths).save(out)
    return paths


def _report(
    config: SensitivityRunConfig,
    results: list[SensitivityResult],
    info: DatasetInfo,
    models: list[_Model],
    paths: dict[str, Path],
) -> Report:
    """report.md / report.html of a sensitivity run: what was swept on what, the SSI per model, the plots."""
    s = config.sweep
    limit = "" if s.limit is None else f" (first {s.limit} images)"
    rep = Report(f"spatialvit sensitivity: {config.data or info.name}")
    rep.paragraph(
        f"Data `{config.data or info.name}`, {config.split} split{limit}, {info.img_size[0]}x{info.img_size[1]}, "
        f"{plural(info.num_classes, 'class')} (chance {1 / info.num_classes:.3f}). {plural(s.repeats, 'draw')} per "
        f"setting, seed {config.seed}. Accuracies are fractions in [0, 1]; error bars: standard error over the draws."
    )
    rep.heading("Models")
    rep.table(
        [
            {"model": m.label, "trained": m.budget or "pretrained (timm)"}
            | {"scored on": "other data (other_data)" if m.other_data else "its own data"}
            for m in models
        ]
    )
    rep.heading("Spatial Sensitivity Index")
    rep.table([res.summary() for res in results])
    rep.paragraph(
        "SSI = 1 − perturbed / clean accuracy, averaged over the shuffle (or mask, rotation) settings: **higher means "
        "more sensitive to the layout of the image** (0: the layout is ignored). flips: the share of predictions that "
        "change; kl: mean KL(clean ‖ perturbed)."
    )
    rep.heading("Accuracy under perturbations")
    caption = "Top-1 under block shuffles and masks; error bars: SE over draws; dotted: chance"
    rep.image(paths["sensitivity_png"], caption)
    if "examples_png" in paths:
        rep.image(paths["examples_png"], "Example images, clean and under each setting (first draw)")
    rep.table(
        [r for res in results for r in res.rows()],
        ["model", "kind", "grid", "ratio", "aligned", "acc1", "acc1_se", "sensitivity", "flip_rate", "kl"],
    )
    rep.paragraph("Every setting: sweep.csv/json/md; the SSI rows: summary.csv/json/md.")
    return rep


def _examples(
    data: Dataset, settings: list[SettingResult], config: SensitivityRunConfig, path: Path, norm: tuple
) -> Path:
    """examples.png: the first ``examples`` images, clean and under each setting's first repeat."""
    from .plots import plot_examples

    n = min(config.examples, len(data))
    images = torch.stack([data[i][0] for i in range(n)])
    index = torch.arange(n)
    columns = {"clean": images}
    options = {"mean": torch.tensor(norm[0]), "std": torch.tensor(norm[1]), "data_mean": torch.tensor(data.info.mean)}
    options |= {"exclude_identity": config.sweep.exclude_identity, "shared": config.sweep.shared}
    for s in settings:
        p = s.perturbation
        columns[p.label] = p.apply(images, p.seed(config.seed, 0), index, **options)
    return plot_examples(columns, path)


def _timm_classifier(name: str, random_init: bool, info: DatasetInfo) -> tuple[nn.Module, tuple]:
    """A timm model in eval mode and its (mean, std): pretrained with timm's normalisation, or freshly initialised
    for ``info``'s classes, channels and size (CNNs take any size) with the data set's normalisation."""
    try:
        import timm
    except ImportError as err:
        raise RuntimeError("--timm-model needs timm: pip install 'spatialvit[timm]'") from err
    if not random_init:
        model = timm.create_model(name, pretrained=True)
        cfg = timm.data.resolve_data_config({}, model=model)
        return model.eval(), (cfg["mean"], cfg["std"])
    kwargs = {"num_classes": info.num_classes, "in_chans": info.in_chans}
    try:
        model = timm.create_model(name, img_size=info.img_size, **kwargs)
    except TypeError:  # models without a fixed input size
        model = timm.create_model(name, **kwargs)
    return model.eval(), (info.mean, info.std)


def _label(path: str, name: str, taken: set[str]) -> str:
    return name if name not in taken else Path(path).stem
