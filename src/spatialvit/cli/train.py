"""``spatialvit train``: train one model on one dataset; flags override a YAML config, which overrides defaults."""

from __future__ import annotations

import argparse
import logging
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from ..report.tables import markdown_table, save_table
from ..train import TrainConfig, fit, load_checkpoint
from ..train.config import config_help
from ..train.loop import RUNTIME_KEYS

EPILOG = """examples:
  spatialvit train --model vit_micro_patch4 --data digits
  spatialvit train --config configs/digits_micro.yaml --epochs 10 --out runs/digits
  spatialvit train --out runs/digits --resume               # continue an interrupted run
  torchrun --nproc_per_node=4 -m spatialvit train --config configs/digits_micro.yaml --out runs/ddp
"""


_METAVARS = {"int": "N", "float": "X"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model on a dataset",
        description="Train a registered model (AdamW, warm-up + cosine schedule, label smoothing, gradient "
        "clipping, bf16 autocast on CUDA) on a dataset. Values come from the defaults, then --config FILE, then "
        "the flags given. The run folder gets config.yaml, metrics.csv/.json/.md, last.pt (every epoch) and "
        "best.pt. Under torchrun it trains with DistributedDataParallel.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="YAML file of config keys (see configs/digits_micro.yaml)")
    hints = typing.get_type_hints(TrainConfig)
    for key, (default, help_text) in config_help().items():
        flag = "--" + key.replace("_", "-")
        if key == "model_kwargs":
            p.add_argument(
                "--model-arg",
                dest="model_kwargs",
                action="append",
                metavar="KEY=VALUE",
                default=argparse.SUPPRESS,
                help=f"{help_text}; repeatable, VALUE read as YAML (e.g. --model-arg drop_path_rate=0.1)",
            )
        elif hints[key] is bool:
            p.add_argument(
                flag,
                dest=key,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=f"{help_text} (default: {'on' if default else 'off'})",
            )
        else:
            p.add_argument(
                flag,
                dest=key,
                **({"nargs": "?", "const": "auto"} if key == "resume" else {}),
                type=_parser_for(hints[key]),
                metavar=_METAVARS.get(_parser_for(hints[key]).__name__, key.upper()),
                default=argparse.SUPPRESS,
                help=help_text if "default" in help_text else f"{help_text} (default: {default})",
            )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    config = build_config(args)
    result = fit(config)
    final, best = result.final, result.best
    rows = [
        {"": f"final (epoch {final['epoch']})", **{k: final[k] for k in ("test_top1", "test_top5", "test_loss")}},
        {"": f"best (epoch {best['epoch']})", **{k: best[k] for k in ("test_top1", "test_top5", "test_loss")}},
    ]
    save_table(rows, result.run_dir, "summary", digits=2)
    total = sum(row["epoch_time_s"] for row in result.history)
    print(f"\n{config.model} on {config.data}: {len(result.history)} epochs, {total:.1f}s of training and evaluation")
    print(markdown_table(rows, digits=2))
    print(f"\nrun folder: {result.run_dir}  (checkpoints last.pt and best.pt, metrics.csv, config.yaml)")
    return 0


def build_config(args: argparse.Namespace) -> TrainConfig:
    """Defaults <- the resumed checkpoint's config or ``--config`` <- the flags given on the command line."""
    overrides = {k: v for k, v in vars(args).items() if k in config_help()}
    if "model_kwargs" in overrides:
        overrides["model_kwargs"] = _key_values(overrides["model_kwargs"])
    base = TrainConfig.from_yaml(args.config) if args.config else _resumed_config(overrides) or TrainConfig()
    if "model_kwargs" in overrides:
        overrides["model_kwargs"] = {**base.model_kwargs, **overrides["model_kwargs"]}
    return TrainConfig.from_dict(overrides, base)


def _resumed_config(overrides: dict[str, Any]) -> TrainConfig | None:
    """Resuming without ``--config``: start from the checkpoint's own config, so only changes need flags."""
    resume = overrides.get("resume")
    if resume is None or (resume == "auto" and "out" not in overrides):
        return None
    path = Path(overrides["out"]) / "last.pt" if resume == "auto" else Path(resume)
    if not path.is_file():
        return None
    saved = load_checkpoint(path).get("config")
    if saved is None:
        return None
    defaults = TrainConfig().to_dict()
    return TrainConfig.from_dict({k: defaults[k] if k in RUNTIME_KEYS - {"out"} else v for k, v in saved.items()})


def _key_values(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--model-arg expects KEY=VALUE, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


def _parser_for(hint: Any):
    """An argparse ``type`` for a config annotation: int/float/str, where optional ones also take 'none'."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    base = next(o for o in options if o is not type(None))
    optional = type(None) in options

    def parse(text: str) -> Any:
        if optional and text.lower() in ("none", "null"):
            return None
        return base(text)

    parse.__name__ = base.__name__  # argparse names the type in its "invalid value" message
    return parse
