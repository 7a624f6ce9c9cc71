"""``spatialvit sensitivity``: block shuffle / mask / rotation sweep of one or more classifiers, side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..data import DatasetInfo, load_dataset
from ..probes import Perturbation, make_settings, save_comparison, sensitivity_sweep
from ..probes.sensitivity import SettingResult, check_input
from ..report.tables import markdown_table
from ..runtime import claim_outputs
from ..train.checkpoint import model_from_checkpoint


def _grids(text: str) -> list[int | tuple[int, int]]:
    """``"2,4,8"`` or ``"2x4,4x8"`` -> grids; ``""`` -> none."""
    out: list[int | tuple[int, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            out.append(tuple(int(v) for v in part.lower().split("x")) if "x" in part.lower() else int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad grid {part!r}: use G or RxC, comma-separated (e.g. 2,4,2x4)"
            ) from None
    return out


def _ratios(text: str) -> list[float]:
    try:
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad ratio list {text!r}: use comma-separated numbers (e.g. 0.25,0.5)"
        ) from None


SWEEP_FILES = ("sweep.*", "summary.*", "sensitivity.png", "shuffle.png", "mask.png", "examples.png")
DESCRIPTION = """\
Measure how much classifiers rely on the spatial layout of their input: cut each test image into
blocks, shuffle them (or mask / rotate some), and compare accuracy, prediction flips and KL to the
clean prediction. Several models give one comparison. Writes to --out: sweep.csv/json/md (every
setting), summary.csv/json/md (Spatial Sensitivity Index per model), sensitivity.png, shuffle.png,
mask.png and examples.png. Grids are G (GxG blocks) or RxC, comma-separated. See docs/sensitivity.md.
"""
EPILOG = """examples:
  spatialvit sensitivity --checkpoint cnn.pt --checkpoint vit.pt --data digits --shuffle-grids 2,4,8 \\
      --mask-ratios 0.25,0.5,0.75 --out results/
  spatialvit sensitivity --checkpoint vit.pt --shuffle-grids 2x4,4x8,16 --mask-fill noise --rotate-grids 4
  spatialvit sensitivity --timm-model deit_small_patch16_224 --data folder:/data/imagenet --img-size 224
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sensitivity",
        help="shuffle/mask sensitivity sweep of classifier checkpoints",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--checkpoint", action="append", default=[], metavar="PATH", help="a spatialvit checkpoint (repeatable)")
    add(
        "--timm-model",
        action="append",
        default=[],
        metavar="NAME",
        help="a pretrained timm model by name (needs the optional 'timm' extra; repeatable)",
    )
    add(
        "--timm-random-init",
        action="store_true",
        help="build --timm-model without pretrained weights, sized for --data (checks the pipeline)",
    )
    add("--data", default="digits", metavar="SPEC", help="dataset NAME or NAME:PATH (default: digits)")
    add("--split", default="test", choices=["train", "test"], help="split to evaluate (default: test)")
    add(
        "--img-size",
        type=int,
        default=None,
        metavar="N",
        help="load images at NxN (default: the size the first checkpoint was trained at)",
    )
    add("--limit", type=int, default=None, metavar="N", help="evaluate only the first N images")
    add("--shuffle-grids", type=_grids, default="2,4,8", metavar="GRIDS", help="grids to shuffle (default: 2,4,8)")
    add("--mask-grids", type=_grids, default=None, metavar="GRIDS", help="grids to mask (default: the shuffle grids)")
    add(
        "--mask-ratios",
        type=_ratios,
        default="0.25,0.5,0.75",
        metavar="RATIOS",
        help="fractions of the blocks to mask, each in [0, 1] (default: 0.25,0.5,0.75)",
    )
    add(
        "--mask-fill",
        default="zero",
        choices=["zero", "mean", "noise"],
        help="zero: 0 after normalisation (default); mean: the data-set mean; noise: N(0, 1) after normalisation",
    )
    add(
        "--rotate-grids",
        type=_grids,
        default="",
        metavar="GRIDS",
        help="grids whose blocks are each rotated by a random multiple of 90 degrees (default: none)",
    )
    add("--repeats", type=int, default=3, metavar="K", help="random draws per setting (default: 3)")
    add("--keep-identity", action="store_true", help="allow a shuffle to leave an image unchanged")
    add("--shared", action="store_true", help="one random draw for all images of a batch")
    add("--batch-size", type=int, default=256, metavar="N", help="images per forward pass (default: 256)")
    add("--seed", type=int, default=0, help="base seed of every perturbation (default: 0)")
    add("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N (default: auto)")
    add("--no-amp", action="store_true", help="no autocast on GPU")
    add("--examples", type=int, default=4, metavar="N", help="images in examples.png (default: 4; 0: no figure)")
    add("--out", default="results/sensitivity", metavar="DIR", help="output folder (default: results/sensitivity)")
    add("--overwrite", action="store_true", help="replace the tables and figures of an earlier sweep in --out")
    add("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


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


def run(args: argparse.Namespace) -> int:
    if not args.checkpoint and not args.timm_model:
        raise ValueError("give at least one --checkpoint PATH or --timm-model NAME")
    if args.repeats < 1 or args.batch_size < 1:
        raise ValueError("--repeats and --batch-size must be positive")
    make_settings(args.shuffle_grids, args.mask_grids, args.mask_ratios, args.mask_fill, args.rotate_grids)
    claim_outputs(args.out, SWEEP_FILES, overwrite=args.overwrite)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device

    models: list[tuple[str, nn.Module, tuple, DatasetInfo | None]] = []  # (label, model, (mean, std), trained on)
    for path in args.checkpoint:
        model, info, ckpt = model_from_checkpoint(path)
        label = _label(path, ckpt["model_name"], {m[0] for m in models})
        models.append((label, model, (info.mean, info.std), info))
    img_size = args.img_size or (models[0][3].img_size[0] if models else None)
    data = load_dataset(args.data, split=args.split, img_size=img_size)
    info: DatasetInfo = data.info
    for name in args.timm_model:
        model, norm = _timm_classifier(name, args.timm_random_init, info)
        models.append((_label(name, name, {m[0] for m in models}), model, norm, None))
    # Every model must fit the data before anything runs.
    image_shape = (info.in_chans, *info.img_size)
    for label, model, _, trained in models:
        try:
            check_input(model, image_shape)
        except ValueError as err:
            raise ValueError(f"{label}: {err}") from None
        if trained is not None and trained.num_classes != info.num_classes:
            raise ValueError(
                f"{label} was trained for {trained.num_classes} classes but {args.data} has {info.num_classes}"
            )
    if args.limit:
        data = Subset(data, range(min(args.limit, len(data))))
        data.info = info  # type: ignore[attr-defined]
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=False)

    results = []
    for label, model, norm, _ in models:
        results.append(
            sensitivity_sweep(
                model.to(device),
                loader,
                normalize=norm,
                shuffle_grids=args.shuffle_grids,
                mask_grids=args.mask_grids,
                mask_ratios=args.mask_ratios,
                mask_fill=args.mask_fill,
                rotate_grids=args.rotate_grids,
                repeats=args.repeats,
                seed=args.seed,
                exclude_identity=not args.keep_identity,
                shared=args.shared,
                name=label,
                amp=False if args.no_amp else None,
                progress=not args.no_progress,
            )
        )
        model.cpu()

    from ..report.sensitivity_plots import plot_sensitivity

    out = Path(args.out)
    paths = save_comparison(results, out)
    rows = [r for res in results for r in res.rows()]
    figures = [plot_sensitivity(rows, out / "sensitivity.png")]
    figures.append(plot_sensitivity(rows, out / "shuffle.png", kinds=("shuffle",)))
    if args.mask_ratios:
        figures.append(plot_sensitivity(rows, out / "mask.png", kinds=("mask",)))
    if args.examples > 0:
        figures.append(_examples(data, results[0].settings, args, out / "examples.png", norm=models[0][2]))
    cols = ["model", "kind", "grid", "ratio", "aligned", "acc1", "acc1_se", "sensitivity", "flip_rate", "kl"]
    print(markdown_table(rows, digits=3, columns=cols))
    print()
    print(markdown_table([res.summary() for res in results], digits=3))
    print(f"\nwrote {', '.join(str(p) for p in [paths['sweep_csv'], paths['summary_csv'], *figures])}")
    return 0


def _examples(data: Dataset, settings: list[SettingResult], args: argparse.Namespace, path: Path, norm: tuple) -> Path:
    """examples.png: the first ``--examples`` images, clean and under each setting's first repeat."""
    from ..report.sensitivity_plots import plot_examples

    n = min(args.examples, len(data))
    images = torch.stack([data[i][0] for i in range(n)])
    index = torch.arange(n)
    columns = {"clean": images}
    options = {"mean": torch.tensor(norm[0]), "std": torch.tensor(norm[1]), "data_mean": torch.tensor(data.info.mean)}
    options |= {"exclude_identity": not args.keep_identity, "shared": args.shared}
    for s in settings:
        p: Perturbation = s.perturbation
        columns[p.label] = p.apply(images, p.seed(args.seed, 0), index, **options)
    return plot_examples(columns, path)
