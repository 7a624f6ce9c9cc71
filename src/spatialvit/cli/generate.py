"""``spatialvit generate train|sample|evaluate``: class-conditional generation with any token mixer."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from .._text import plural
from ..config import Config, add_arguments, from_args
from ..generation.config import (
    DenoiserConfig,
    GenerateEvalConfig,
    GenerateSampleConfig,
    GenerateTrainConfig,
    SamplingConfig,
)
from .common import command, config_file, resume_flag

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


def _sampling_args(p: argparse.ArgumentParser, cls: type[Config]) -> None:
    defaults = cls.describe()["sampling"][0]
    add_arguments(p.add_argument_group("sampling"), SamplingConfig, defaults=defaults, dest_prefix="sampling.")


def _run_args(p: argparse.ArgumentParser, cls: type[Config], *, skip: tuple[str, ...] = ()) -> None:
    """``--config FILE`` and every key of ``cls`` that is not nested or ``skip``ped (given as a positional)."""
    config_file(p, f"`{p.prog}`")
    add_arguments(p, cls, skip=skip)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "generate", DESCRIPTION, EXAMPLES)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    _train_parser(actions)
    s = command(actions, "sample", SAMPLE_TEXT, SAMPLE_EXAMPLES, run_sample)
    s.add_argument("checkpoint", metavar="CHECKPOINT", help=GenerateSampleConfig.describe()["checkpoint"][1])
    _run_args(s, GenerateSampleConfig, skip=("checkpoint",))
    _sampling_args(s, GenerateSampleConfig)
    e = command(actions, "evaluate", EVALUATE_TEXT, EVALUATE_EXAMPLES, run_evaluate)
    e.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="denoiser checkpoints to compare")
    _run_args(e, GenerateEvalConfig, skip=("checkpoints",))
    _sampling_args(e, GenerateEvalConfig)


def _train_parser(actions: argparse._SubParsersAction) -> None:
    t = command(actions, "train", TRAIN_TEXT, TRAIN_EXAMPLES, run_train, resumable=True)
    _run_args(t, GenerateTrainConfig, skip=("resume",))
    resume_flag(t, GenerateTrainConfig.describe()["resume"][1])
    add_arguments(t.add_argument_group("optimisation"), DenoiserConfig, dest_prefix="denoiser.")
    _sampling_args(t, GenerateTrainConfig)


def _required(config: Config, *keys: str) -> None:
    """Raise a ``ValueError`` naming the flag of the first of ``keys`` that has no value, and what it is."""
    for key in keys:
        if not getattr(config, key):
            what = type(config).describe()[key][1].split(" (default")[0]
            raise ValueError(f"--{key.replace('_', '-')} is required: {what}")


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


def _setup(config: Config, seed: int) -> torch.device:
    """Threads and seed of the run; the device it asked for."""
    import torch

    from ..runtime import resolve_device

    if config.threads is not None:  # type: ignore[attr-defined]
        torch.set_num_threads(config.threads)  # type: ignore[attr-defined]
    torch.manual_seed(seed)
    return resolve_device(config.device)  # type: ignore[attr-defined]


def _samples(model: torch.nn.Module, config: Config, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The sample grid's images and labels, drawn with ``config.sampling`` from ``seed``."""
    from ..generation.sampler import sample_classes

    return sample_classes(model, config.sampling, seed=seed, progress=config.progress)  # type: ignore[attr-defined]


def run_train(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from ..generation.loop import denoiser_from_checkpoint, train_on_dataset
    from ..generation.sampler import class_names, save_image_grid
    from ..runtime import claim_outputs

    config = from_args(args, GenerateTrainConfig, nested=("denoiser", "sampling"), config_file=args.config)
    _required(config, "out")
    out = Path(config.out)
    if not config.resume:
        claim_outputs(out, DENOISER_FILES, overwrite=config.overwrite, resume_flag="--resume")
    mixer = mixer_of(config.mixer)
    device = _setup(config, config.denoiser.seed)
    start = time.perf_counter()
    model, ckpt, _ = train_on_dataset(replace(config, mixer=mixer), device=device)
    seconds = time.perf_counter() - start
    params = sum(p.numel() for p in model.parameters())
    named = mixer if mixer == config.mixer else f"{mixer} ({config.mixer})"
    print(f"denoiser: {config.size} DiT, mixer {named}, {params:,} parameters, grid {model.grid}")
    ckpt_path = out / "denoiser.pt"
    ema_model, info, _ = denoiser_from_checkpoint(ckpt_path, use_ema=not config.sampling.raw_weights)
    images, _ = _samples(ema_model.to(device), config, config.denoiser.seed)
    grid = save_image_grid(images, out / "samples.png", ncol=config.sampling.per_class, row_labels=class_names(info))
    last = ckpt["losses"][-config.denoiser.checkpoint_every :]
    print(
        f"trained to step {ckpt['step']} in {seconds:.0f}s (this call); mean training loss of the last "
        f"{plural(len(last), 'step')}: {sum(last) / len(last):.4f}"
    )
    print(f"wrote {ckpt_path}, {out / 'losses.csv'}, {grid}")
    return 0


def run_sample(args: argparse.Namespace) -> int:
    import torch

    from ..generation.loop import denoiser_from_checkpoint
    from ..generation.sampler import class_names, save_image_grid
    from ..runtime import claim_outputs

    config = from_args(args, GenerateSampleConfig, nested=("sampling",), config_file=args.config)
    _required(config, "checkpoint")
    checkpoint = Path(config.checkpoint)
    out = Path(config.out) if config.out else checkpoint.parent / f"sample_seed{config.seed}.png"
    save_tensor = Path(config.save_tensor) if config.save_tensor else None
    for path in filter(None, [out, save_tensor]):
        claim_outputs(path.parent, [path.name], overwrite=config.overwrite)
    device = _setup(config, config.seed)
    model, info, _ = denoiser_from_checkpoint(checkpoint, use_ema=not config.sampling.raw_weights)
    images, labels = _samples(model.to(device), config, config.seed)
    path = save_image_grid(images, out, ncol=config.sampling.per_class, row_labels=class_names(info))
    print(f"wrote {path} ({plural(len(images), 'sample')}, one row per class)")
    if save_tensor is not None:
        save_tensor.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"images": images, "labels": labels}, save_tensor)
        print(f"wrote {save_tensor}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..generation.loop import denoiser_from_checkpoint
    from ..report.tables import markdown_table, save_table
    from ..runtime import claim_outputs
    from ..train.checkpoint import classifier_from_checkpoint

    config = from_args(args, GenerateEvalConfig, nested=("sampling",), config_file=args.config)
    _required(config, "checkpoints", "classifier", "out")
    device = _setup(config, config.seed)
    out, checkpoints = Path(config.out), [Path(c) for c in config.checkpoints]
    runs = [path.parent.name or path.stem for path in checkpoints]
    if len(set(runs)) != len(runs):
        raise ValueError(f"each checkpoint is named by its folder, and these repeat: {runs}; use distinct folders")
    names = [f"{config.name}.{ext}" for ext in ("csv", "json", "md")] + [f"{run}_samples.png" for run in runs]
    claim_outputs(out, names, overwrite=config.overwrite)
    classifier, clf_info = classifier_from_checkpoint(config.classifier, map_location=device)
    first_info = denoiser_from_checkpoint(checkpoints[0])[1]
    if clf_info.in_chans != first_info.in_chans or clf_info.num_classes != first_info.num_classes:
        raise ValueError(
            f"classifier ({plural(clf_info.in_chans, 'channel')}, {plural(clf_info.num_classes, 'class')}) does "
            f"not match the denoiser's data ({plural(first_info.in_chans, 'channel')}, "
            f"{plural(first_info.num_classes, 'class')})"
        )
    spec = config.data or first_info.name
    reference, _ = _real(spec, config.real_split, first_info.img_size[0], clf_info.img_size)
    judge = _Judge(classifier, clf_info.img_size, reference, config.k)
    rows = [_real_row(judge, spec, first_info.img_size[0])]
    for run, path in zip(runs, checkpoints):
        rows.append(_denoiser_row(config, judge, run=run, path=path, first_info=first_info, device=device))
    paths = save_table(rows, out, config.name)
    print(markdown_table(rows))
    print(
        f"FID/precision/recall on features of {config.classifier} against the {config.real_split} split (not "
        f"Inception-FID). Wrote {paths['csv']}, {paths['json']}, {paths['md']} and sample grids in {out}"
    )
    return 0


def _real(spec: str, split: str, img_size: int, clf_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of a split at the denoiser's size, resized to the classifier's, and their labels."""
    import torch

    from ..data import load_dataset, resize_images

    ds = load_dataset(spec, split, img_size=img_size)
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    return resize_images(x, clf_size), torch.tensor([ds[i][1] for i in range(len(ds))])


class _Judge(NamedTuple):
    """What scores samples: the classifier, its input size, the real reference images and the k of k-NN."""

    classifier: torch.nn.Module
    img_size: tuple[int, int]
    reference: torch.Tensor
    k: int

    def scores(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        from ..data import resize_images
        from ..generation.evaluate import generation_metrics

        return generation_metrics(self.classifier, self.reference, resize_images(images, self.img_size), labels, self.k)


def _real_row(judge: _Judge, spec: str, img_size: int) -> dict[str, Any]:
    """The floor: the real test split scored against the reference split, as a perfect generator would be."""
    from ..generation.evaluate import generation_metrics

    test_x, test_y = _real(spec, "test", img_size, judge.img_size)
    metrics = generation_metrics(judge.classifier, judge.reference, test_x, test_y, judge.k)
    row = {"run": f"real {spec} test split", "mixer": None, "params": None, "train_steps": None}
    return {**row, "samples": len(test_x), **metrics, "sample_s": None}


def _denoiser_row(
    config: GenerateEvalConfig, judge: _Judge, *, run: str, path: Path, first_info: Any, device: Any
) -> dict[str, Any]:
    """One denoiser's samples, their grid (OUT/RUN_samples.png) and their scores."""
    from ..generation.loop import denoiser_from_checkpoint
    from ..generation.sampler import class_names, save_image_grid

    model, info, ckpt = denoiser_from_checkpoint(path, use_ema=not config.sampling.raw_weights)
    if info != first_info:
        raise ValueError(f"{path} was trained on other data ({info.name} {info.img_size}) than the first checkpoint")
    start = time.perf_counter()
    images, labels = _samples(model.to(device), config, config.seed)
    seconds = time.perf_counter() - start
    grid = Path(config.out) / f"{run}_samples.png"
    save_image_grid(images, grid, ncol=config.sampling.per_class, row_labels=class_names(info))
    row = {
        "run": run,
        "mixer": ckpt["model_kwargs"]["attn_layer"],
        "params": sum(p.numel() for p in model.parameters()),
        "train_steps": ckpt["step"],
        "samples": len(images),
    }
    return {**row, **judge.scores(images, labels), "sample_s": seconds}
