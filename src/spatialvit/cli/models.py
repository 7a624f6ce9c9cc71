"""``spatialvit models``: list registered models with their input size, parameters and FLOPs."""

from __future__ import annotations

import argparse
import sys

from .._text import plural
from .common import command

EXAMPLES = """\
spatialvit models sdt
spatialvit models 'vit_*_micro_patch4' --params --flops
"""
MODELS_TEXT = """\
list the registered models

List registered model names with their default input size. PATTERN is a part of the name ('sdt': every
name containing sdt) or a shell-style pattern ('vit_*_patch4'); a pattern that matches nothing lists the
model families. --params adds the parameter count (built on the meta device, no weights: fast);
--flops the GMACs (multiply-accumulates, 10^9) of one forward pass of one image at the model's default
input size (spatialvit.models.measure_complexity; FLOPs = 2 x MACs; builds each model: slower).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "models", MODELS_TEXT, EXAMPLES, run)
    p.add_argument(
        "pattern", nargs="?", default="*", metavar="PATTERN", help="part of a name, or a shell-style pattern"
    )
    p.add_argument("--params", action="store_true", help="also print each model's parameter count")
    p.add_argument("--flops", action="store_true", help="also print each model's GMACs at its default input size")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..models import create_model, measure_complexity, model_defaults
    from ..models.registry import list_families, list_models
    from ..runtime import progress_bar

    names = list_models(args.pattern)
    if not names:
        how = "matches" if any(c in args.pattern for c in "*?[") else "contains"
        raise ValueError(
            f"no registered model name {how} {args.pattern!r}. Families: {', '.join(list_families())} "
            "(`spatialvit models` lists every model)"
        )
    rows = []
    bar = progress_bar(total=len(names), desc="GMACs", enabled=args.flops, leave=False)
    if args.flops:
        print(
            f"measuring the GMACs of {plural(len(names), 'model')} (builds each one: about a second each)",
            file=sys.stderr,
        )
    for i, name in enumerate(names, 1):
        size = model_defaults(name).get("img_size") or 32  # CNNs without a fixed size: CIFAR-sized input
        row = {"model": name, "img_size": f"{size}x{size}"}
        if args.params:
            with torch.device("meta"):  # shapes only: no memory, no initialisation
                model = create_model(name)
            row["params"] = f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M"
        if args.flops:
            bar.set_postfix_str(name)
            macs = measure_complexity(create_model(name), img_size=size).macs
            bar.update(1)
            row["GMACs"] = f"{macs / 1e9:.3f}"
            if not sys.stderr.isatty() and (i % 10 == 0 or i == len(names)):  # a log: a line every 10 models
                print(f"  {i}/{len(names)} models measured", file=sys.stderr)
        rows.append(row)
    bar.close()
    widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0]}
    print("  ".join(f"{k:{w}s}" for k, w in widths.items()).rstrip())
    for row in rows:
        print("  ".join(f"{row[k]:{w}s}" for k, w in widths.items()).rstrip())
    if args.flops:
        print(
            "\nGMACs: multiply-accumulates (10^9) of one forward pass of one image at img_size NxN (FLOPs = 2 x MACs)"
        )
    return 0
