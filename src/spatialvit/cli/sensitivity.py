"""``spatialvit sensitivity``: block shuffle / mask / rotation sweep of one or more classifiers, side by side."""

from __future__ import annotations

import argparse

from ..config import add_arguments, given
from ..probes.config import SensitivityRunConfig, SweepConfig
from .common import command, repeatable

DESCRIPTION = """\
shuffle/mask sensitivity sweep of classifier checkpoints

Measure how much classifiers rely on the spatial layout of their input: cut each test image into
blocks, shuffle them (or mask / rotate some), and compare accuracy, prediction flips and KL to the
clean prediction. Several models give one comparison. The data defaults to what the first checkpoint
was trained on (its image size and normalisation too). Writes to --out: sweep.csv/json/md (every
setting), summary.csv/json/md (Spatial Sensitivity Index per model), sensitivity.png, shuffle.png,
mask.png and examples.png. Grids are G (GxG blocks) or RxC, comma-separated. See docs/sensitivity.md.
"""
EXAMPLES = """\
spatialvit sensitivity --checkpoint cnn.pt --checkpoint vit.pt --shuffle-grids 2,4,8 --mask-ratios 0.25,0.5,0.75
spatialvit sensitivity --checkpoint vit.pt --shuffle-grids 2x4,4x8,16 --mask-fill noise --rotate-grids 4
spatialvit sensitivity --timm-model deit_small_patch16_224 --data folder:/data/imagenet --img-size 224
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "sensitivity", DESCRIPTION, EXAMPLES, run)
    keys = SensitivityRunConfig.describe()
    need = "none; give at least one --checkpoint or --timm-model"
    repeatable(p, "--checkpoint", dest="checkpoints", metavar="PATH", help=keys["checkpoints"][1], default=need)
    repeatable(p, "--timm-model", dest="timm_models", metavar="NAME", help=keys["timm_models"][1], default=need)
    add_arguments(p, SensitivityRunConfig, skip=("checkpoints", "timm_models"))
    add_arguments(p.add_argument_group("the sweep"), SweepConfig, dest_prefix="sweep.")


def run(args: argparse.Namespace) -> int:
    from ..probes.sensitivity_run import run_sensitivity
    from ..report.tables import markdown_table

    values = given(args, SensitivityRunConfig)
    values["sweep"] = given(args, SweepConfig, dest_prefix="sweep.")
    results, paths = run_sensitivity(SensitivityRunConfig.from_dict(values))
    rows = [r for res in results for r in res.rows()]
    cols = ["model", "kind", "grid", "ratio", "aligned", "acc1", "acc1_se", "sensitivity", "flip_rate", "kl"]
    print(markdown_table(rows, digits=3, columns=cols))
    print()
    print(markdown_table([res.summary() for res in results], digits=3))
    shown = [paths["sweep_csv"], paths["summary_csv"], *(v for k, v in paths.items() if k.endswith("_png"))]
    print(f"\nwrote {', '.join(str(p) for p in shown)}")
    return 0
