"""Cost of the block perturbations relative to one forward pass of a ViT on the same batch.

The sweep perturbs each batch once per (setting, repeat) and runs the model on it, so the perturbation's share of
the time is ``perturb / forward``. Both are timed in the same process, interleaved round by round (so load on a
shared machine hits both alike), and the table reports medians and their ratio.

    PYTHONPATH=src python benchmarks/perturb_overhead.py                       # vit_tiny_patch4, batch 256, 1 thread
    PYTHONPATH=src python benchmarks/perturb_overhead.py --model vit_micro_patch4 --rounds 9 --out results/bench
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from spatialvit.models import create_model
from spatialvit.probes import block_mask, block_rotate, block_shuffle
from spatialvit.report.tables import markdown_table, save_table
from spatialvit.runtime import OutputExistsError, claim_outputs


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="vit_tiny_patch4", help="registered model (32x32 inputs)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5, help="timed rounds (medians are reported)")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (1: steadier on shared cores)")
    p.add_argument("--out", default=None, help="also save the table (CSV/JSON/Markdown) to this folder")
    p.add_argument("--overwrite", action="store_true", help="replace the table of an earlier run in --out")
    args = p.parse_args()
    if args.out:
        try:
            claim_outputs(args.out, ["perturb_overhead.*"], overwrite=args.overwrite)
        except OutputExistsError as err:
            p.error(str(err))

    torch.set_num_threads(args.threads)
    model = create_model(args.model, in_chans=args.channels).eval()
    H, W = model.img_size
    x = torch.rand(args.batch_size, args.channels, H, W, generator=torch.Generator().manual_seed(0))
    mean, std = torch.full((args.channels,), 0.5), torch.full((args.channels,), 0.25)
    perturbations: dict[str, Callable[[], torch.Tensor]] = {
        "shuffle 2x2": lambda: block_shuffle(x, 2, seed=1, exclude_identity=True),
        "shuffle 4x4": lambda: block_shuffle(x, 4, seed=1, exclude_identity=True),
        "shuffle 8x8": lambda: block_shuffle(x, 8, seed=1, exclude_identity=True),
        "shuffle 16x16": lambda: block_shuffle(x, 16, seed=1, exclude_identity=True),
        "mask 8x8 r=0.5 zero": lambda: block_mask(x, 8, 0.5, fill="zero", mean=mean, seed=1),
        "mask 8x8 r=0.5 noise": lambda: block_mask(x, 8, 0.5, fill="noise", mean=mean, std=std, seed=1),
        "rotate 4x4": lambda: block_rotate(x, 4, seed=1),
    }
    with torch.inference_mode():
        model(x[:8])  # warm-up
        for fn in perturbations.values():
            fn()
        forward, times = [], {name: [] for name in perturbations}
        for _ in range(args.rounds):
            forward.append(_time(lambda: model(x)))
            for name, fn in perturbations.items():
                times[name].append(_time(fn))
    fwd = statistics.median(forward)
    rows = [{"operation": f"{args.model} forward", "ms": 1e3 * fwd, "percent_of_forward": 100.0}]
    rows += [
        {"operation": name, "ms": 1e3 * statistics.median(t), "percent_of_forward": 100 * statistics.median(t) / fwd}
        for name, t in times.items()
    ]
    print(f"batch {args.batch_size}x{args.channels}x{H}x{W}, {args.threads} thread(s), median of {args.rounds} rounds")
    print(markdown_table(rows, digits=3))
    if args.out:
        save_table(rows, args.out, "perturb_overhead")


if __name__ == "__main__":
    main()
