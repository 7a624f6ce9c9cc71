"""``spatialvit study``: the headline study — train (or load) several models on one dataset, measure their spatial
sensitivity and attention, and write one report."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import yaml

from .._text import plural
from ..config import add_arguments, given
from ..probes.config import SweepConfig
from ..study.config import StudyConfig
from ..train.config import TrainConfig
from .common import command, config_file, repeatable

# Training keys a study takes as flags (all of train: in YAML).
TRAIN_FLAGS = ("epochs", "train_limit", "batch_size", "lr", "warmup_epochs", "threads", "device")
# Sweep keys a study takes as flags (all of sensitivity: in YAML), and their flags' names.
SWEEP_FLAGS = {"limit": "--sweep-limit", "repeats": "--repeats"}

DESCRIPTION = """\
train/load several models, sensitivity sweep + attention probes, one report

Train (or load) a set of models on one dataset, run the block shuffle/mask sensitivity sweep on each,
measure the mean attention distance per layer and head of every ViT and the patch association of every
positional-attention layer (against local 2x2 blocks of the token grid, or the partition of --data synthetic),
and write a report.

Default (no --config): the bundled digits at 32x32, six micro models (small ResNet, plain ViT, conv-Q/K/V,
positional attention, RMT decay, SDT), 12 epochs each, seeds 0, 1, 2, two runs at a time (--workers 2): 7.3
minutes measured on a 2-core CPU, 8.3 with a fresh set-up (docs/results.md).

Writes to --out: report.md and a self-contained report.html; comparison.csv/json/md (params, clean
top-1, shuffle/mask sensitivity index, mean attention distance, association, train time, img/s);
sweep.* and summary.* (every sensitivity setting); attention_distance.*; association.*; sensitivity.png,
attention_distance.png, attention_maps.png; runs/<model>/ (checkpoints). An --out that holds a study is
never overwritten unasked: --resume reuses its finished runs, --overwrite starts again. See docs/study.md
for the config keys and the recipes under configs/.
"""
EXAMPLES = """\
spatialvit study                                        # the default digits study into study/
spatialvit study --models resnet_small,vit_micro_patch4 --epochs 2 --out quick/
spatialvit study --models resnet_small,vit_micro_patch4 --seeds 0,1 --epochs 1 --train-limit 300 \
    --sweep-limit 200 --repeats 1 --out quick/                          # a quick study: a minute on a CPU
spatialvit study --config configs/cifar10_tiny.yaml --data cifar10:/data/cifar-10-batches-py
spatialvit study --checkpoint vit_micro_patch4=runs/vit/last.pt --models vit_micro_patch4
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "study", DESCRIPTION, EXAMPLES, run, resumable=True)
    config_file(p, "study config (configs/study_digits.yaml, configs/study_fashion_mnist.yaml, ...)")
    add_arguments(p, StudyConfig)
    repeatable(
        p,
        "--checkpoint",
        dest="checkpoint",
        metavar="MODEL=PATH",
        help="use this checkpoint for MODEL instead of training it",
        default="train every model",
    )
    train = p.add_argument_group("training (keys of train:, shared by every model)")
    add_arguments(
        train, TrainConfig, keys=TRAIN_FLAGS, defaults=StudyConfig.describe()["train"][0], dest_prefix="train."
    )
    sweep = p.add_argument_group("sensitivity sweep (keys of sensitivity:)")
    add_arguments(
        sweep, SweepConfig, keys=SWEEP_FLAGS, defaults=StudyConfig.describe()["sensitivity"][0],
        dest_prefix="sensitivity.", flags=SWEEP_FLAGS,
    )  # fmt: skip


def build_config(args: argparse.Namespace) -> StudyConfig:
    """Defaults <- ``--config`` <- the flags given. A study that loads checkpoints and names no data (neither flag
    nor YAML) runs on the data and image size the first checkpoint was trained on."""
    base = StudyConfig.from_yaml(args.config) if args.config else StudyConfig()
    values = given(args, StudyConfig)
    values["train"] = base.train_changes(given(args, TrainConfig, dest_prefix="train."))
    values["sensitivity"] = given(args, SweepConfig, dest_prefix="sensitivity.")
    if getattr(args, "checkpoint", None):
        pairs = [c.split("=", 1) for c in args.checkpoint]
        if any(len(p) != 2 or not all(p) for p in pairs):
            raise ValueError(f"--checkpoint must be MODEL=PATH, got {args.checkpoint}")
        values["checkpoints"] = {**base.checkpoints, **dict(pairs)}
    config = StudyConfig.from_dict(values, base)
    named = set(values) | (set(yaml.safe_load(Path(args.config).read_text()) or {}) if args.config else set())
    if config.checkpoints and not {"data", "img_size"} & named:
        from ..train.checkpoint import load_checkpoint, trained_on

        trained = trained_on(load_checkpoint(next(iter(config.checkpoints.values()))))
        config = StudyConfig.from_dict({"data": trained["data"], "img_size": trained["resize"]}, config)
    return config


def run(args: argparse.Namespace) -> int:
    from ..report.tables import markdown_table
    from ..study.report import shown_comparison
    from ..study.runner import run_study

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = build_config(args)
    t0 = time.perf_counter()
    result = run_study(config)
    if result is None:  # a non-zero torchrun rank: training only
        return 0
    print(f"\nstudy of {plural(len(config.models), 'model')} on {config.data} in {time.perf_counter() - t0:.0f}s")
    print(markdown_table(shown_comparison(result.comparison)))
    print(f"\nreport: {result.out / 'report.md'} and {result.out / 'report.html'}")
    return 0
