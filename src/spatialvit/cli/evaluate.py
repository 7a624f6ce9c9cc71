"""``spatialvit eval``: top-1/top-5/loss of a checkpoint on a dataset split, printed and saved as a table."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config import add_arguments, given
from ..train.config import EvalConfig
from .common import command, explain_default

EXAMPLES = """\
spatialvit eval --checkpoint runs/digits/best.pt
spatialvit eval --checkpoint runs/digits/last.pt --split train --out runs/digits/eval_train
spatialvit eval --checkpoint runs/imagenet_rmt_t/last.pt --ema             # writes eval_ema.csv/.json/.md
spatialvit eval --checkpoint runs/digits/best.pt --data fashion_mnist --other-data
"""
DESCRIPTION = """\
evaluate a checkpoint on a dataset

Evaluate a checkpoint written by `spatialvit train`: cross-entropy loss, top-1 and top-5 accuracy on a split of a
dataset, with the images resized to the model's input size and normalised with the training statistics stored in
the checkpoint. The data defaults to what the checkpoint was trained on; other data is refused unless --other-data
asks for it. Accuracies are fractions in [0, 1], as in every spatialvit output. The table (its
weights column says raw or EMA) is printed and saved as eval.csv/.json/.md (eval_ema.* with --ema).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "eval", DESCRIPTION, EXAMPLES, run)
    add_arguments(p, EvalConfig)
    explain_default(p, "checkpoint", "give one")


def run(args: argparse.Namespace) -> int:
    from ..report.tables import markdown_table, save_table
    from ..runtime import claim_outputs
    from ..train.checkpoint import same_data
    from ..train.loop import evaluate_checkpoint

    config = EvalConfig.from_dict(given(args, EvalConfig))
    if not config.checkpoint:
        raise ValueError("--checkpoint is required: the checkpoint file to score (e.g. runs/x/best.pt)")
    out = Path(config.out) if config.out else Path(config.checkpoint).parent
    name = "eval_ema" if config.ema else "eval"
    claim_outputs(out, [f"{name}.{ext}" for ext in ("csv", "json", "md")], overwrite=config.overwrite)
    options = {k: v for k, v in config.to_dict().items() if k not in ("checkpoint", "out", "overwrite")}
    row = evaluate_checkpoint(config.checkpoint, **options)
    paths = save_table([row], out, name, digits=4)
    weights = "the model EMA" if config.ema else "the raw weights"
    differs = not same_data(row["trained_on"], row["data"])
    other = f" (trained on {row['trained_on']}: other data, --other-data)" if differs else ""
    print(
        f"{weights} of {config.checkpoint} on the {config.split} split of {row['data']}{other}; "
        "top-1/top-5 as fractions"
    )
    print(markdown_table([row], digits=4))
    print(f"\nsaved {paths['csv']} (.json, .md)")
    return 0
