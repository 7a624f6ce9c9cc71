"""``spatialvit study``: the headline study — train (or load) several models on one dataset, measure their spatial
sensitivity and attention, and write one report."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from ..report.tables import markdown_table
from ..study import COLUMNS, WALL_CLOCK, StudyConfig, run_study

DESCRIPTION = """\
Train (or load) a set of models on one dataset, run the block shuffle/mask sensitivity sweep on each,
measure the mean attention distance per layer and head of every ViT and the patch association of every
positional-attention layer (against local 2x2 blocks of the token grid, or the partition of --data synthetic),
and write a report.

Default (no --config): the bundled digits at 32x32, six micro models (small ResNet, plain ViT, conv-Q/K/V,
positional attention, RMT decay, SDT), 12 epochs each: 5.5 minutes measured on a 2-core CPU (docs/results.md).

Writes to --out: report.md and a self-contained report.html; comparison.csv/json/md (params, clean
top-1, shuffle/mask sensitivity index, mean attention distance, association, train time, img/s);
sweep.* and summary.* (every sensitivity setting); attention_distance.*; association.*; sensitivity.png,
attention_distance.png, attention_maps.png; runs/<model>/ (checkpoints). An --out that holds a study is
never overwritten unasked: --resume reuses its finished runs, --overwrite starts again. See docs/study.md
for the config keys and the recipes under configs/.
"""
EPILOG = """examples:
  spatialvit study                                        # the default digits study into study/
  spatialvit study --models resnet_small,vit_micro_patch4 --epochs 2 --out quick/
  spatialvit study --config configs/cifar10_tiny.yaml --data cifar10:/data/cifar-10-batches-py
  spatialvit study --checkpoint vit_micro_patch4=runs/vit/last.pt --models vit_micro_patch4
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="train/load several models, sensitivity sweep + attention probes, one report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--config", metavar="FILE", help="study YAML (configs/study_digits.yaml, configs/cifar10_tiny.yaml, ...)")
    add("--data", metavar="SPEC", help="dataset NAME or NAME:PATH (default: digits)")
    add("--img-size", type=int, metavar="N", help="resize the data to N x N (default: the data's own size)")
    add("--models", metavar="A,B,...", help="comma-separated registered model names (`spatialvit models`)")
    add("--epochs", type=int, metavar="N", help="training epochs per model (overrides train.epochs)")
    add("--device", metavar="DEV", help="auto, cpu, cuda or cuda:N (overrides train.device)")
    add(
        "--checkpoint",
        action="append",
        default=[],
        metavar="MODEL=PATH",
        help="use this checkpoint for MODEL instead of training it (repeatable)",
    )
    add("--seed", type=int, help="seed of training, sweep and probes (default: 0)")
    add("--out", metavar="DIR", help="output folder (default: study/)")
    add(
        "--resume",
        action="store_true",
        help="continue the study in --out: reuse its finished runs, continue interrupted ones, redo the analysis",
    )
    add("--overwrite", action="store_true", help="start again in an --out that holds a study (deletes its files)")
    add("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> StudyConfig:
    """Defaults <- ``--config`` <- the flags given."""
    base = StudyConfig.from_yaml(args.config) if args.config else StudyConfig()
    values: dict = {k: v for k in ("data", "img_size", "seed", "out") if (v := getattr(args, k)) is not None}
    if args.models:
        values["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    train = dict(base.train)
    if args.epochs is not None:
        train["epochs"] = args.epochs
        train["warmup_epochs"] = min(train.get("warmup_epochs", 1.0), args.epochs)
    if args.device is not None:
        train["device"] = args.device
    values["train"] = train
    if args.checkpoint:
        pairs = [c.split("=", 1) for c in args.checkpoint]
        if any(len(p) != 2 or not all(p) for p in pairs):
            raise ValueError(f"--checkpoint must be MODEL=PATH, got {args.checkpoint}")
        values["checkpoints"] = {**base.checkpoints, **dict(pairs)}
    values |= {k: True for k in ("resume", "overwrite", "no_progress") if getattr(args, k)}
    if values.pop("no_progress", False):
        values["progress"] = False
    return StudyConfig.from_dict(values, base)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = build_config(args)
    t0 = time.perf_counter()
    result = run_study(config)
    if result is None:  # a non-zero torchrun rank: training only
        return 0
    print(f"\nstudy of {len(config.models)} models on {config.data} in {time.perf_counter() - t0:.0f}s")
    print(markdown_table(result.comparison, 3, [*COLUMNS, *WALL_CLOCK]))
    print(f"\nreport: {result.out / 'report.md'} and {result.out / 'report.html'}")
    return 0
