"""``spatialvit generate train|sample|evaluate``: class-conditional generation with any token mixer."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .._text import plural
from ..catalog import mixer_names
from ..config import add_arguments, given
from ..generation.config import DenoiserConfig, SamplingConfig
from .common import command, positive_int

if TYPE_CHECKING:
    import torch

DENOISER_FILES = ("denoiser.pt", "losses.*", "samples.png")
DESCRIPTION = """\
train, sample and evaluate a class-conditional diffusion transformer

Class-conditional image generation with a DiT-style denoiser whose blocks use any registered token
mixer, trained by rectified flow (flow matching) with EMA weights and sampled with Euler/Heun plus
classifier-free guidance. `evaluate` scores samples with a classifier trained by `spatialvit train` on
the same data: FID and precision/recall on its penultimate features (NOT Inception-FID, not comparable
to published numbers) and its accuracy on the requested classes.
"""
TRAIN_EXAMPLES = """\
spatialvit train --model resnet_small --data digits --img-size 16 --out runs/clf     # the judge classifier
spatialvit generate train --mixer cag --out runs/gen/cag                             # digits 16x16, micro DiT
spatialvit generate train --mixer sdt --out runs/gen/sdt                             # a family's mixer (cag)
spatialvit generate train --mixer cag --out runs/gen/cag --steps 3000 --resume       # go on where it stopped
"""
SAMPLE_EXAMPLES = """\
spatialvit generate sample runs/gen/cag/denoiser.pt --cfg-scale 3      # writes runs/gen/cag/sample_seed0.png
spatialvit generate sample runs/gen/cag/denoiser.pt --out cag.png --seed 1
"""
EVALUATE_EXAMPLES = """\
spatialvit generate evaluate runs/gen/*/denoiser.pt --classifier runs/clf/best.pt --out runs/gen/eval
"""
EXAMPLES = TRAIN_EXAMPLES + SAMPLE_EXAMPLES + EVALUATE_EXAMPLES
MIXERS = mixer_names()


SAMPLE_TEXT = """\
draw a sample grid from a denoiser checkpoint

Sample --per-class images of every class (one row per class, labelled) and save them as a PNG grid
(by default sample_seed<SEED>.png beside the checkpoint);
--save-tensor also writes the images [N, C, H, W] in [0, 1] and their labels to a .pt file.
"""


TRAIN_TEXT = """\
train a denoiser (resumable)

Train a denoiser on a dataset; writes OUT/denoiser.pt (atomically, every --checkpoint-every
steps), OUT/losses.{csv,json,md} and a sample grid OUT/samples.png. --resume continues a stopped run.
"""


EVALUATE_TEXT = """\
FID / precision / recall / accuracy of one or more denoisers

Score each denoiser checkpoint with a classifier checkpoint of `spatialvit train`: generate
--per-class samples per class, compare classifier features with the real images of --real-split (FID,
k-NN precision/recall) and report the classifier's accuracy on the requested classes. A first row
scores the real test split the same way (the floor a perfect generator would reach at that sample
size). Writes OUT/NAME.{csv,json,md} and OUT/<run>_samples.png.
"""


def _sampling_args(p: argparse.ArgumentParser, per_class: int) -> None:
    add_arguments(p.add_argument_group("sampling"), SamplingConfig, defaults=SamplingConfig(per_class=per_class))
    p.set_defaults(per_class=per_class)


def _common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "generate", DESCRIPTION, EXAMPLES)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    _train_parser(actions)
    s = command(actions, "sample", SAMPLE_TEXT, SAMPLE_EXAMPLES, run_sample)
    s.add_argument(
        "checkpoint", type=Path, metavar="CHECKPOINT", help="denoiser checkpoint (OUT/denoiser.pt of `generate train`)"
    )
    s.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="PNG file of the sample grid (default: sample_seed<SEED>.png in the checkpoint's folder)",
    )
    s.add_argument(
        "--save-tensor",
        type=Path,
        metavar="FILE",
        help="also save images and labels to this .pt file (default: not saved)",
    )
    s.add_argument("--overwrite", action="store_true", help="replace existing --out / --save-tensor files")
    _sampling_args(s, per_class=8)
    _common_args(s)
    _evaluate_parser(actions)


def _train_parser(actions: argparse._SubParsersAction) -> None:
    t = command(actions, "train", TRAIN_TEXT, TRAIN_EXAMPLES, run_train, resumable=True)
    t.add_argument("--data", default="digits", metavar="SPEC", help="dataset spec NAME or NAME:PATH")
    t.add_argument("--img-size", type=positive_int, default=16, help="image side the data is resized to")
    t.add_argument(
        "--mixer",
        default="softmax",
        metavar="NAME",
        help=f"token mixer: {', '.join(MIXERS)}, or a model family's name for its mixer (sdt, rmt, posattn, ...)",
    )
    t.add_argument(
        "--attn-kwargs",
        type=json_object,
        default={},
        metavar="JSON",
        help="options for the mixer, e.g. '{\"alpha\": 2}'",
    )
    t.add_argument("--size", choices=("micro", "tiny", "small"), default="micro", help="transformer size")
    t.add_argument("--patch-size", type=positive_int, default=2, help="patch side")
    t.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (required)")
    t.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        metavar="PATH",
        help="continue a run: --resume alone continues OUT/denoiser.pt, --resume PATH that checkpoint "
        "(default: a new run)",
    )
    t.add_argument("--overwrite", action="store_true", help="start again in an OUT that holds a run (deletes it)")
    add_arguments(t.add_argument_group("optimisation"), DenoiserConfig, skip=("seed",))
    _sampling_args(t, per_class=8)
    _common_args(t)


def _evaluate_parser(actions: argparse._SubParsersAction) -> None:
    e = command(actions, "evaluate", EVALUATE_TEXT, EVALUATE_EXAMPLES, run_evaluate)
    e.add_argument("checkpoints", type=Path, nargs="+", metavar="CHECKPOINT", help="denoiser checkpoints to compare")
    e.add_argument(
        "--classifier", type=Path, required=True, help="classifier checkpoint of `spatialvit train` (required)"
    )
    e.add_argument("--data", metavar="SPEC", help="dataset spec of the real images (default: the denoiser's)")
    e.add_argument("--real-split", choices=("train", "test"), default="train", help="real reference set")
    e.add_argument("--k", type=positive_int, default=3, help="neighbours for precision/recall")
    e.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (required)")
    e.add_argument("--name", default="generation_metrics", metavar="NAME", help="table name")
    e.add_argument("--overwrite", action="store_true", help="replace the table and sample grids of an earlier run")
    _sampling_args(e, per_class=36)
    _common_args(e)


def json_object(text: str) -> dict:
    """argparse type: a JSON object, with the position of a syntax error in the message."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg} at character {err.pos + 1}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"alpha\": 2}}', got {text}")
    return value


def mixer_of(name: str) -> str:
    """The token mixer ``name`` stands for: a mixer's own name, or a model family (``sdt``, ``vit_sdt`` -> ``cag``;
    ``rmt`` -> ``decay``; ``posattn`` -> ``positional``; ``convqkv`` -> ``conv_qkv``; ``vit`` -> ``softmax``)."""
    from ..attention import list_attention
    from ..models import model_defaults
    from ..models.registry import list_models, model_family

    if name in list_attention():
        return name
    families: dict[str, str] = {}
    for model in list_models():
        mixer = model_defaults(model).get("attn_layer")
        family = model_family(model)
        if mixer:
            families.setdefault(family, mixer)
            families.setdefault(family.removeprefix("vit_"), mixer)
    if name in families:
        return families[name]
    raise ValueError(
        f"--mixer {name!r} is neither a token mixer ({', '.join(list_attention())}) nor a model family "
        f"({', '.join(sorted(families))}); `spatialvit models` lists the families"
    )


def _setup(args: argparse.Namespace) -> None:
    import torch

    from ..runtime import resolve_device

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.device = resolve_device(args.device)


def _sampling(args: argparse.Namespace) -> SamplingConfig:
    return SamplingConfig.from_dict(given(args, SamplingConfig))


def _samples(model: torch.nn.Module, args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor]:
    """The sample grid's images and labels, with the sampling flags and the seed of ``args``."""
    from ..generation.sampler import sample_classes

    return sample_classes(model, _sampling(args), seed=args.seed, progress=not args.no_progress)


def run_train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from ..generation.loop import denoiser_from_checkpoint, train_on_dataset
    from ..generation.sampler import class_names, save_image_grid
    from ..runtime import claim_outputs

    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run or start it again")
    if not args.resume:
        claim_outputs(args.out, DENOISER_FILES, overwrite=args.overwrite, resume_flag="--resume")
    mixer = mixer_of(args.mixer)
    _setup(args)
    config = DenoiserConfig.from_dict({**given(args, DenoiserConfig), "seed": args.seed})
    start = time.perf_counter()
    model, ckpt, _ = train_on_dataset(
        args.data,
        args.out,
        config,
        img_size=args.img_size,
        size=args.size,
        patch_size=args.patch_size,
        mixer=mixer,
        attn_kwargs=args.attn_kwargs,
        resume=args.resume or False,
        device=args.device,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    named = mixer if mixer == args.mixer else f"{mixer} ({args.mixer})"
    print(f"denoiser: {args.size} DiT, mixer {named}, {params:,} parameters, grid {model.grid}")
    ckpt_path = args.out / "denoiser.pt"
    ema_model, info, _ = denoiser_from_checkpoint(ckpt_path, use_ema=not _sampling(args).raw_weights)
    images, _ = _samples(ema_model.to(args.device), args)
    grid = save_image_grid(images, args.out / "samples.png", ncol=args.per_class, row_labels=class_names(info))
    last = ckpt["losses"][-config.checkpoint_every :]
    print(
        f"trained to step {ckpt['step']} in {seconds:.0f}s (this call); mean training loss of the last "
        f"{plural(len(last), 'step')}: {sum(last) / len(last):.4f}"
    )
    print(f"wrote {ckpt_path}, {args.out / 'losses.csv'}, {grid}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    import torch

    from ..generation.loop import denoiser_from_checkpoint
    from ..generation.sampler import class_names, save_image_grid
    from ..runtime import claim_outputs

    args.out = args.out or args.checkpoint.parent / f"sample_seed{args.seed}.png"
    for path in filter(None, [args.out, args.save_tensor]):
        claim_outputs(path.parent, [path.name], overwrite=args.overwrite)
    _setup(args)
    model, info, _ = denoiser_from_checkpoint(args.checkpoint, use_ema=not _sampling(args).raw_weights)
    images, labels = _samples(model.to(args.device), args)
    path = save_image_grid(images, args.out, ncol=args.per_class, row_labels=class_names(info))
    print(f"wrote {path} ({plural(len(images), 'sample')}, one row per class)")
    if args.save_tensor is not None:
        args.save_tensor.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"images": images, "labels": labels}, args.save_tensor)
        print(f"wrote {args.save_tensor}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    import torch

    from ..data import load_dataset, resize_images
    from ..generation.evaluate import generation_metrics
    from ..generation.loop import denoiser_from_checkpoint
    from ..generation.sampler import class_names, save_image_grid
    from ..report.tables import markdown_table, save_table
    from ..runtime import claim_outputs
    from ..train.checkpoint import classifier_from_checkpoint

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
            f"classifier ({plural(clf_info.in_chans, 'channel')}, {plural(clf_info.num_classes, 'class')}) does "
            f"not match the denoiser's data ({plural(first_info.in_chans, 'channel')}, "
            f"{plural(first_info.num_classes, 'class')})"
        )
    reference, _ = real(args.real_split)
    test_x, test_y = real("test")
    metrics = generation_metrics(classifier, reference, test_x, test_y, args.k)
    rows = [{"run": f"real {spec} test split", "mixer": None, "params": None, "train_steps": None}]
    rows[0].update(samples=len(test_x), **metrics, sample_s=None)
    for run, path in zip(runs, args.checkpoints):
        model, info, ckpt = denoiser_from_checkpoint(path, use_ema=not _sampling(args).raw_weights)
        if info != first_info:
            raise ValueError(
                f"{path} was trained on other data ({info.name} {info.img_size}) than {args.checkpoints[0]}"
            )
        start = time.perf_counter()
        images, labels = _samples(model.to(args.device), args)
        seconds = time.perf_counter() - start
        save_image_grid(images, args.out / f"{run}_samples.png", ncol=args.per_class, row_labels=class_names(info))
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
