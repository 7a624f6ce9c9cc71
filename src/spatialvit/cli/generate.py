"""``spatialvit generate train|sample|evaluate``: class-conditional generation with any token mixer."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..attention import list_attention
from ..data import load_dataset, resize_images
from ..generation import (
    DenoiserConfig,
    class_labels,
    create_dit,
    denoiser_from_checkpoint,
    generation_metrics,
    sample,
    save_image_grid,
    train_denoiser,
)
from ..generation.flow import T_SAMPLING
from ..generation.sampler import SAMPLERS
from ..models.vit import SIZES
from ..report.tables import markdown_table, save_table
from ..runtime import claim_outputs
from ..train.checkpoint import classifier_from_checkpoint

DENOISER_FILES = ("denoiser.pt", "losses.*", "samples.png")
EPILOG = """examples:
  spatialvit train --model resnet_small --data digits --img-size 16 --out runs/clf      # the judge classifier
  spatialvit generate train --mixer cag --out runs/gen/cag                              # digits 16x16, micro DiT
  spatialvit generate train --mixer cag --out runs/gen/cag --steps 3000 --resume        # go on where it stopped
  spatialvit generate sample runs/gen/cag/denoiser.pt --out cag.png --cfg-scale 3
  spatialvit generate evaluate runs/gen/*/denoiser.pt --classifier runs/clf/best.pt --out runs/gen/eval
"""


def _sampling_args(p: argparse.ArgumentParser, per_class: int) -> None:
    g = p.add_argument_group("sampling")
    g.add_argument("--per-class", type=int, default=per_class, help=f"samples per class (default {per_class})")
    g.add_argument("--sample-steps", type=int, default=10, help="ODE steps (default 10)")
    g.add_argument("--sampler", choices=SAMPLERS, default="heun", help="ODE solver (default heun: 2 calls/step)")
    g.add_argument("--cfg-scale", type=float, default=2.0, help="classifier-free guidance scale; 1 = none (default 2)")
    g.add_argument("--raw-weights", action="store_true", help="sample with the raw weights instead of the EMA")


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "generate",
        help="train, sample and evaluate a class-conditional diffusion transformer",
        description="Class-conditional image generation with a DiT-style denoiser whose blocks use any registered "
        "token mixer, trained by rectified flow (flow matching) with EMA weights and sampled with Euler/Heun plus "
        "classifier-free guidance. `evaluate` scores samples with a classifier trained by `spatialvit train` on "
        "the same data: FID and precision/recall on its penultimate features (NOT Inception-FID, not comparable "
        "to published numbers) and its accuracy on the requested classes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    t = actions.add_parser(
        "train",
        help="train a denoiser (resumable)",
        description="Train a denoiser on a dataset; writes OUT/denoiser.pt (atomically, every --checkpoint-every "
        "steps), OUT/losses.{csv,json,md} and a sample grid OUT/samples.png. --resume continues a stopped run.",
    )
    t.add_argument("--data", default="digits", help="dataset spec NAME or NAME:PATH (default digits)")
    t.add_argument("--img-size", type=int, default=16, help="image side the data is resized to (default 16)")
    t.add_argument("--mixer", default="softmax", help=f"token mixer (registered: {', '.join(list_attention())})")
    t.add_argument("--attn-kwargs", type=json.loads, default={}, help="JSON options for the mixer, e.g. '{\"a\": 1}'")
    t.add_argument("--size", choices=sorted(SIZES), default="micro", help="transformer size (default micro)")
    t.add_argument("--patch-size", type=int, default=2, help="patch side (default 2)")
    t.add_argument("--out", type=Path, required=True, help="output folder")
    t.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="PATH",
        help="continue a run: --resume alone continues OUT/denoiser.pt, --resume PATH that checkpoint",
    )
    t.add_argument("--overwrite", action="store_true", help="start again in an OUT that holds a run (deletes it)")
    d = DenoiserConfig()
    o = t.add_argument_group("optimisation")
    o.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default {d.steps})")
    o.add_argument("--batch-size", type=int, default=d.batch_size, help=f"batch size (default {d.batch_size})")
    o.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr})")
    o.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    o.add_argument("--warmup", type=int, default=d.warmup, help=f"linear warm-up steps (default {d.warmup})")
    o.add_argument("--ema-decay", type=float, default=d.ema_decay, help=f"EMA decay (default {d.ema_decay})")
    o.add_argument("--label-dropout", type=float, default=d.label_dropout, help="share of unconditional labels")
    o.add_argument("--t-sampling", choices=T_SAMPLING, default=d.t_sampling, help="distribution of flow times")
    o.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient-norm clip; 0 = none")
    o.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="steps between checkpoints")
    _sampling_args(t, per_class=8)
    _common_args(t)
    t.set_defaults(func=run_train)

    s = actions.add_parser(
        "sample",
        help="draw a sample grid from a denoiser checkpoint",
        description="Sample --per-class images of every class (one row per class) and save them as a PNG grid; "
        "--save-tensor also writes the images [N, C, H, W] in [0, 1] and their labels to a .pt file.",
    )
    s.add_argument("checkpoint", type=Path, help="denoiser checkpoint (OUT/denoiser.pt of `generate train`)")
    s.add_argument("--out", type=Path, default=Path("samples.png"), help="PNG path (default samples.png)")
    s.add_argument("--save-tensor", type=Path, default=None, help="also save images and labels to this .pt file")
    s.add_argument("--overwrite", action="store_true", help="replace existing --out / --save-tensor files")
    _sampling_args(s, per_class=8)
    _common_args(s)
    s.set_defaults(func=run_sample)

    e = actions.add_parser(
        "evaluate",
        help="FID / precision / recall / accuracy of one or more denoisers",
        description="Score each denoiser checkpoint with a classifier checkpoint of `spatialvit train`: generate "
        "--per-class samples per class, compare classifier features with the real images of --real-split (FID, "
        "k-NN precision/recall) and report the classifier's accuracy on the requested classes. A first row scores "
        "the real test split the same way (the floor a perfect generator would reach at that sample size). "
        "Writes OUT/NAME.{csv,json,md} and OUT/<run>_samples.png.",
    )
    e.add_argument("checkpoints", type=Path, nargs="+", help="denoiser checkpoints to compare")
    e.add_argument("--classifier", type=Path, required=True, help="classifier checkpoint of `spatialvit train`")
    e.add_argument("--data", default=None, help="dataset spec of the real images (default: the denoiser's)")
    e.add_argument("--real-split", choices=("train", "test"), default="train", help="real reference set")
    e.add_argument("--k", type=int, default=3, help="neighbours for precision/recall (default 3)")
    e.add_argument("--out", type=Path, required=True, help="output folder")
    e.add_argument("--name", default="generation_metrics", help="table name (default generation_metrics)")
    e.add_argument("--overwrite", action="store_true", help="replace the table and sample grids of an earlier run")
    _sampling_args(e, per_class=36)
    _common_args(e)
    e.set_defaults(func=run_evaluate)


def _setup(args: argparse.Namespace) -> None:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)


def _samples(model: torch.nn.Module, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` images of every class in ``[0, 1]`` and their labels, from the seed of ``args``."""
    if args.per_class < 1:
        raise ValueError(f"--per-class must be >= 1, got {args.per_class}")
    labels = class_labels(model.num_classes, args.per_class)
    gen = torch.Generator().manual_seed(args.seed)
    x = sample(model, labels, args.sample_steps, args.sampler, args.cfg_scale, gen, progress=not args.no_progress)
    return x.add(1).div(2).cpu(), labels


def run_train(args: argparse.Namespace) -> int:
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run or start it again")
    if not args.resume:
        claim_outputs(args.out, DENOISER_FILES, overwrite=args.overwrite, resume_flag="--resume")
    _setup(args)
    data = load_dataset(args.data, "train", img_size=args.img_size)
    info = data.info
    if info.img_size[0] != info.img_size[1]:
        raise ValueError(f"the denoiser needs square images, got {info.img_size}")
    model = create_dit(
        args.size,
        img_size=info.img_size[0],
        patch_size=args.patch_size,
        in_chans=info.in_chans,
        num_classes=info.num_classes,
        attn_layer=args.mixer,
        attn_kwargs=args.attn_kwargs,
    ).to(args.device)
    config = DenoiserConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup=args.warmup,
        ema_decay=args.ema_decay,
        label_dropout=args.label_dropout,
        t_sampling=args.t_sampling,
        grad_clip=args.grad_clip,
        checkpoint_every=args.checkpoint_every,
        seed=args.seed,
    )
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = torch.tensor([data[i][1] for i in range(len(data))])
    params = sum(p.numel() for p in model.parameters())
    print(f"denoiser: {args.size} DiT, mixer {args.mixer!r}, {params:,} parameters, grid {model.grid}")
    ckpt_path = args.out / "denoiser.pt"
    start = time.perf_counter()
    ckpt = train_denoiser(model, images, labels, info, config, ckpt_path, args.resume or False, not args.no_progress)
    seconds = time.perf_counter() - start
    losses = ckpt["losses"]
    window = max(1, len(losses) // 20)
    rows = [
        {"step": i + len(chunk), "loss": sum(chunk) / len(chunk)}
        for i in range(0, len(losses), window)
        for chunk in [losses[i : i + window]]
    ]
    save_table(rows, args.out, "losses")
    ema_model, _, _ = denoiser_from_checkpoint(ckpt_path, use_ema=not args.raw_weights)
    images, _ = _samples(ema_model.to(args.device), args)
    grid = save_image_grid(images, args.out / "samples.png", ncol=args.per_class)
    print(f"trained to step {ckpt['step']} in {seconds:.0f}s (this call); final loss {rows[-1]['loss']:.4f}")
    print(f"wrote {ckpt_path}, {args.out / 'losses.csv'}, {grid}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    for path in filter(None, [args.out, args.save_tensor]):
        claim_outputs(path.parent, [path.name], overwrite=args.overwrite)
    _setup(args)
    model, _, _ = denoiser_from_checkpoint(args.checkpoint, use_ema=not args.raw_weights)
    images, labels = _samples(model.to(args.device), args)
    path = save_image_grid(images, args.out, ncol=args.per_class)
    print(f"wrote {path} ({len(images)} samples, one row per class)")
    if args.save_tensor is not None:
        args.save_tensor.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"images": images, "labels": labels}, args.save_tensor)
        print(f"wrote {args.save_tensor}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    _setup(args)
    runs = [path.parent.name or path.stem for path in args.checkpoints]
    if len(set(runs)) != len(runs):
        raise ValueError(f"each checkpoint is named by its folder, and these repeat: {runs}; use distinct folders")
    names = [f"{args.name}.{ext}" for ext in ("csv", "json", "md")] + [f"{run}_samples.png" for run in runs]
    claim_outputs(args.out, names, overwrite=args.overwrite)
    classifier, clf_info = classifier_from_checkpoint(args.classifier, map_location=args.device)
    first_info = denoiser_from_checkpoint(args.checkpoints[0])[1]
    spec = args.data or first_info.name

    def real(split: str) -> tuple[torch.Tensor, torch.Tensor]:
        ds = load_dataset(spec, split, img_size=first_info.img_size[0])
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        return resize_images(x, clf_info.img_size), torch.tensor([ds[i][1] for i in range(len(ds))])

    if clf_info.in_chans != first_info.in_chans or clf_info.num_classes != first_info.num_classes:
        raise ValueError(
            f"classifier ({clf_info.in_chans} channels, {clf_info.num_classes} classes) does not match the "
            f"denoiser's data ({first_info.in_chans} channels, {first_info.num_classes} classes)"
        )
    reference, _ = real(args.real_split)
    test_x, test_y = real("test")
    metrics = generation_metrics(classifier, reference, test_x, test_y, args.k)
    rows = [{"run": f"real {spec} test split", "mixer": None, "params": None, "train_steps": None}]
    rows[0].update(samples=len(test_x), **metrics, sample_s=None)
    for run, path in zip(runs, args.checkpoints):
        model, info, ckpt = denoiser_from_checkpoint(path, use_ema=not args.raw_weights)
        if info != first_info:
            raise ValueError(
                f"{path} was trained on other data ({info.name} {info.img_size}) than {args.checkpoints[0]}"
            )
        start = time.perf_counter()
        images, labels = _samples(model.to(args.device), args)
        seconds = time.perf_counter() - start
        save_image_grid(images, args.out / f"{run}_samples.png", ncol=args.per_class)
        row = {
            "run": run,
            "mixer": ckpt["model_kwargs"]["attn_layer"],
            "params": sum(p.numel() for p in model.parameters()),
            "train_steps": ckpt["step"],
            "samples": len(images),
        }
        row.update(generation_metrics(classifier, reference, resize_images(images, clf_info.img_size), labels, args.k))
        rows.append({**row, "sample_s": seconds})
    paths = save_table(rows, args.out, args.name)
    print(markdown_table(rows))
    print(
        f"FID/precision/recall on features of {args.classifier} against the {args.real_split} split (not "
        f"Inception-FID). Wrote {paths['csv']}, {paths['json']}, {paths['md']} and sample grids in {args.out}"
    )
    return 0
