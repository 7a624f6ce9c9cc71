"""``spatialvit train``: train one model on one dataset; flags override a YAML config, which overrides defaults."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import yaml

from .._text import plural
from ..config import add_arguments, given
from ..train.config import TrainConfig
from .common import command, config_file, explain_default, repeatable, resume_flag

DESCRIPTION = """\
train a model on a dataset

Train a registered model (AdamW, warm-up + cosine schedule, label smoothing, gradient clipping, bf16
autocast on CUDA) on a dataset. Values come from the defaults, then --config FILE, then the flags given.
The run folder gets config.yaml, metrics.csv/.json/.md, summary.*, last.pt (every epoch) and best.pt.
Under torchrun it trains with DistributedDataParallel.
"""
EXAMPLES = """\
spatialvit train --model vit_micro_patch4 --data digits
spatialvit train --config configs/digits_micro.yaml --epochs 10 --out runs/digits
spatialvit train --out runs/digits --resume               # continue an interrupted run
torchrun --nproc_per_node=4 -m spatialvit train --config configs/digits_micro.yaml --out runs/ddp
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "train", DESCRIPTION, EXAMPLES, run, resumable=True)
    config_file(p, "training config (configs/digits_micro.yaml)")
    add_arguments(p, TrainConfig, skip=("resume",))
    explain_default(p, "stop_after", "run to the end of the schedule")
    keys = TrainConfig.describe()
    help_text = f"{keys['model_kwargs'][1]}; VALUE read as YAML, e.g. --model-arg drop_path_rate=0.1"
    repeatable(p, "--model-arg", dest="model_kwargs", metavar="KEY=VALUE", help=help_text, default="none")
    resume_flag(p, f"{keys['resume'][1]} (default: a new run)")


def run(args: argparse.Namespace) -> int:
    from ..report.tables import markdown_table
    from ..train.loop import fit

    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = build_config(args)
    result = fit(config)
    total = sum(row["epoch_time_s"] for row in result.history)
    print(
        f"\n{config.model} on {config.data}: {plural(len(result.history), 'epoch')}, {total:.1f}s of training and "
        "evaluation"
    )
    print(markdown_table(result.summary(), digits=4))
    print(f"\nrun folder: {result.run_dir}  (checkpoints last.pt and best.pt, metrics.csv, config.yaml)")
    return 0


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults <- the resumed checkpoint's config or ``--config`` <- the flags given on the command line."""
    from ..train.loop import saved_config

    overrides = given(args, TrainConfig)
    if "model_kwargs" in overrides:
        overrides["model_kwargs"] = _key_values(overrides["model_kwargs"])
    if args.config:
        base = TrainConfig.from_yaml(args.config)
    else:
        base = saved_config(overrides.get("resume"), overrides.get("out")) or TrainConfig()
    if "model_kwargs" in overrides:
        overrides["model_kwargs"] = {**base.model_kwargs, **overrides["model_kwargs"]}
    return TrainConfig.from_dict(overrides, base)


def _key_values(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out
