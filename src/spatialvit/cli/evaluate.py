"""``spatialvit eval``: top-1/top-5/loss of a checkpoint on a dataset split, printed and saved as a table."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import command, positive_int

EXAMPLES = """\
spatialvit eval --checkpoint runs/digits/best.pt
spatialvit eval --checkpoint runs/digits/last.pt --split train --out runs/digits/eval_train
spatialvit eval --checkpoint runs/imagenet_rmt_t/last.pt --ema             # writes eval_ema.csv/.json/.md
spatialvit eval --checkpoint runs/digits/best.pt --data fashion_mnist --other-data
"""
DESCRIPTION = """\
evaluate a checkpoint on a dataset

Evaluate a checkpoint written by `spatialvit train`: cross-entropy loss, top-1 and top-5 accuracy (%)
on a split of a dataset, with the images resized to the model's input size and normalised with the
training statistics stored in the checkpoint. The data defaults to what the checkpoint was trained on;
other data is refused unless --other-data asks for it. Accuracies are percentages. The table (its
weights column says raw or EMA) is printed and saved as eval.csv/.json/.md (eval_ema.* with --ema).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "eval", DESCRIPTION, EXAMPLES, run)
    p.add_argument(
        "--checkpoint", required=True, metavar="PATH", help="checkpoint file (e.g. runs/x/best.pt; required)"
    )
    p.add_argument(
        "--data", metavar="SPEC", help="dataset spec NAME or NAME:PATH (default: the data the model was trained on)"
    )
    p.add_argument(
        "--other-data",
        action="store_true",
        help="score the checkpoint on a --data other than the one it was trained on (refused without it)",
    )
    p.add_argument("--split", choices=("test", "train"), default="test", help="which split")
    p.add_argument(
        "--ema",
        action="store_true",
        help="evaluate the model EMA the checkpoint keeps (runs trained with --ema-decay) instead of its weights",
    )
    p.add_argument("--batch-size", type=positive_int, default=256, help="images per batch")
    p.add_argument("--device", default="auto", metavar="DEV", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--out", metavar="DIR", help="folder for eval.* / eval_ema.* (default: the checkpoint's folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing eval.* / eval_ema.* in the folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from ..report.tables import markdown_table, save_table
    from ..runtime import claim_outputs
    from ..train.checkpoint import same_data
    from ..train.loop import evaluate_checkpoint

    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    name = "eval_ema" if args.ema else "eval"
    claim_outputs(out, [f"{name}.{ext}" for ext in ("csv", "json", "md")], overwrite=args.overwrite)
    row = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        args.split,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.no_progress,
        ema=args.ema,
        other_data=args.other_data,
    )
    paths = save_table([row], out, name, digits=2)
    weights = "the model EMA" if args.ema else "the raw weights"
    differs = not same_data(row["trained_on"], row["data"])
    other = f" (trained on {row['trained_on']}: other data, --other-data)" if differs else ""
    print(f"{weights} of {args.checkpoint} on the {args.split} split of {row['data']}{other}; top-1/top-5 in %")
    print(markdown_table([row], digits=2))
    print(f"\nsaved {paths['csv']} (.json, .md)")
    return 0
