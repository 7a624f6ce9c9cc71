"""``spatialvit bench models``: training and inference throughput and peak memory of every ViT family."""

from __future__ import annotations

import argparse

from .common import command

DESCRIPTION = """\
every ViT family against the plain ViT of its size

Measure training and inference images/s and peak memory of every registered ViT family at one size, in
one run, against the plain ViT of that size (x_base_* columns: > 1 is faster than the plain ViT). With
timm installed, timm's vit_tiny_patch16_224 recipe at the same image and patch size is added as a reference.
A training step is forward + cross-entropy + backward + AdamW on random images; inference is a no-grad
forward. Peak memory: CUDA max_memory_allocated, or on CPU the allocator's running total recorded by
torch.profiler (docs/study.md). Timings on a busy machine are noisy: compare the ratios, which are measured
in the same run. Writes bench_models.csv/json/md to --out.
"""
EXAMPLES = """\
spatialvit bench models --size micro --patch 4 --img-size 32 --threads 2
spatialvit bench models --size tiny --patch 16 --img-size 224 --device cuda --dtype bfloat16
"""


BENCH_TEXT = """\
throughput and peak memory of the model families

Benchmarks of speed and memory; WHAT is one of the sub-commands below (`spatialvit bench WHAT --help`
shows its options).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    from ..bench.config import BenchConfig
    from ..config import add_arguments

    p = command(sub, "bench", BENCH_TEXT, EXAMPLES)
    what = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    m = command(what, "models", DESCRIPTION, EXAMPLES, run)
    add_arguments(m, BenchConfig)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..bench.config import BenchConfig
    from ..bench.models import run_bench
    from ..config import given
    from ..report.tables import markdown_table
    from ..runtime import resolve_device

    config = BenchConfig.from_dict(given(args, BenchConfig))
    rows, paths = run_bench(config)
    resolved = resolve_device(config.device)
    device = torch.cuda.get_device_name(resolved) if resolved.type == "cuda" else "CPU"
    print(
        f"\n{config.size} models, patch {config.patch}, {config.img_size}x{config.img_size}, batch "
        f"{config.batch_size}, {config.dtype}, {device}"
    )
    print(markdown_table(rows, 2))
    print(f"\nsaved {', '.join(str(p) for p in paths.values())}")
    return 0
