"""``spatialvit models``: list registered models with their size."""

from __future__ import annotations

import argparse

from .common import command

EXAMPLES = """\
spatialvit models
spatialvit models sdt
spatialvit models 'vit_*_micro_patch4' --params
"""
MODELS_TEXT = """\
list the registered models

List registered model names (shell-style PATTERN, e.g. 'vit_*_patch4'), with their default
input size and, with --params, their parameter count.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "models", MODELS_TEXT, EXAMPLES, run)
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter on model names (default: all)")
    p.add_argument("--params", action="store_true", help="also build each model and print its parameter count")


def run(args: argparse.Namespace) -> int:
    from ..models import create_model, list_models, model_defaults

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches pattern {args.pattern!r}")
    for name in names:
        size = model_defaults(name).get("img_size", 32)
        line = f"{name:32s} img_size={size}"
        if args.params:
            n = sum(p.numel() for p in create_model(name).parameters())
            line += f"  params={n / 1e6:.2f}M"
        print(line)
    return 0
