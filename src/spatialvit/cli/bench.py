"""``spatialvit bench models``: training and inference throughput and peak memory of every ViT family."""

from __future__ import annotations

import argparse

import torch

from ..bench import bench_models, family_models
from ..report.tables import markdown_table, save_table
from ..runtime import claim_outputs

DESCRIPTION = """\
Measure training and inference images/s and peak memory of every registered ViT family at one size, in
one run, against the plain ViT of that size (x_base_* columns: > 1 is faster than the plain ViT). With
timm installed, timm's vit_tiny_patch16_224 recipe at the same image and patch size is added as a reference.
A training step is forward + cross-entropy + backward + AdamW on random images; inference is a no-grad
forward. Peak memory: CUDA max_memory_allocated, or on CPU the torch.profiler allocation trace.
Timings on a busy machine are noisy: compare the ratios, which are measured in the same run.
Writes bench_models.csv/json/md to --out.
"""
EPILOG = """examples:
  spatialvit bench models --size micro --patch 4 --img-size 32 --threads 1
  spatialvit bench models --size tiny --patch 16 --img-size 224 --device cuda --dtype bfloat16
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="throughput and peak memory of the model families",
        description="Benchmarks. `spatialvit bench models --help` for the model benchmark.",
    )
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    m = what.add_parser(
        "models", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add = m.add_argument
    add("--size", default="micro", choices=["micro", "tiny", "small"], help="model size (default: micro)")
    add("--patch", type=int, default=4, choices=[4, 16], help="patch size (default: 4)")
    add("--img-size", type=int, default=32, metavar="N", help="image size N x N (default: 32)")
    add("--in-chans", type=int, default=3, metavar="C", help="input channels (default: 3)")
    add("--batch-size", type=int, default=64, metavar="B", help="images per step (default: 64)")
    add("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    add("--dtype", default="float32", choices=["float32", "bfloat16"], help="float32, or bfloat16 autocast")
    add("--repeats", type=int, default=5, metavar="R", help="timed calls per measurement, median (default: 5)")
    add("--threads", type=int, metavar="T", help="torch CPU threads (1 gives steadier numbers on a busy CPU)")
    add("--no-timm", action="store_true", help="skip the timm reference even when timm is installed")
    add("--out", default="results/bench", metavar="DIR", help="output folder (default: results/bench/)")
    add("--overwrite", action="store_true", help="replace the tables of an earlier run in --out")
    add("--no-progress", action="store_true", help="no progress bar")
    m.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    claim_outputs(args.out, ["bench_models.*"], overwrite=args.overwrite)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = bench_models(
        family_models(args.size, args.patch),
        img_size=args.img_size,
        batch_size=args.batch_size,
        in_chans=args.in_chans,
        device=args.device,
        dtype=args.dtype,
        repeats=args.repeats,
        timm_reference=not args.no_timm,
        progress=not args.no_progress,
    )
    device = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "CPU"
    print(
        f"\n{args.size} models, patch {args.patch}, {args.img_size}x{args.img_size}, batch {args.batch_size}, "
        f"{args.dtype}, {device}"
    )
    print(markdown_table(rows, 2))
    paths = save_table(rows, args.out, "bench_models")
    print(f"\nsaved {', '.join(str(p) for p in paths.values())}")
    return 0
