"""``spatialvit eval``: top-1/top-5/loss of a checkpoint on a dataset split, printed and saved as a table."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..report.tables import markdown_table, save_table
from ..runtime import claim_outputs
from ..train.loop import evaluate_checkpoint

EVAL_FILES = ("eval.csv", "eval.json", "eval.md")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a checkpoint on a dataset",
        description="Evaluate a checkpoint written by `spatialvit train`: cross-entropy loss, top-1 and top-5 "
        "accuracy (%%) on a split of a dataset, with the images resized to the model's input size and normalised "
        "with the training statistics stored in the checkpoint. The table is printed and saved as CSV/JSON/Markdown.",
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="checkpoint file (e.g. runs/x/best.pt)")
    p.add_argument(
        "--data", metavar="SPEC", help="dataset spec NAME or NAME:PATH (default: the data the model was trained on)"
    )
    p.add_argument("--split", choices=("test", "train"), default="test", help="which split (default: test)")
    p.add_argument("--batch-size", type=int, default=256, help="images per batch (default: 256)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda or cuda:N (default: auto)")
    p.add_argument("--out", metavar="DIR", help="folder for eval.csv/.json/.md (default: the checkpoint's folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing eval.csv/.json/.md in the folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.batch_size <= 0:
        raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    claim_outputs(out, EVAL_FILES, overwrite=args.overwrite)
    row = evaluate_checkpoint(
        args.checkpoint, args.data, args.split, args.batch_size, args.device, progress=not args.no_progress
    )
    paths = save_table([row], out, "eval", digits=2)
    print(markdown_table([row], digits=2))
    print(f"\nsaved {paths['csv']} (.json, .md)")
    return 0
