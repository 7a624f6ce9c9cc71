"""Training-step time of the ImageNet recipes' models at 224x224 on this machine, their FLOPs, and the GPU-hours a
recipe would take at an assumed sustained GPU throughput (an estimate, stated as such).

    PYTHONPATH=src python benchmarks/imagenet_step.py --models rmt_t sdt_t --batch-size 8 --threads 2

A step is what ``spatialvit train`` does per batch: forward in train mode (stochastic depth on), soft-target
cross-entropy, backward, AdamW step. The models are timed in turns (one step of each per round) so a busy machine
slows them alike; the minimum and the median over the rounds are printed. The training FLOPs of an image are taken
as 3x its forward FLOPs (backward = 2x forward, the usual rule; ``spatialvit.models.measure_complexity`` counts 2
FLOPs per multiply-accumulate). The GPU estimate divides a recipe's training FLOPs (epochs x images x 3 x forward)
by an *assumed* sustained bf16 throughput (``--gpu-tflops``), not a measurement.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F

from spatialvit.models import create_model, measure_complexity

IMAGENET_TRAIN_IMAGES = 1_281_167
IMAGENET_VAL_IMAGES = 50_000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["rmt_t", "sdt_t"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--gpu-tflops", type=float, nargs="+", default=[100.0, 200.0],
                   help="assumed sustained bf16 TFLOP/s of one GPU (model FLOPs actually achieved)")  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B = args.batch_size
    x, y = torch.rand(B, 3, 224, 224), torch.randint(0, 1000, (B,))
    steps, flops = {}, {}
    for name in args.models:
        model = create_model(name)
        flops[name] = measure_complexity(model, 224).flops
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, opt=opt) -> None:
            model.train()
            loss = F.cross_entropy(model(x), y, label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up: allocations and the optimiser state
        steps[name] = step
    times: dict[str, list[float]] = {name: [] for name in args.models}
    for _ in range(args.rounds):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"batch {B} at 224x224, {args.threads} torch threads, {args.rounds} rounds, load average {load:.1f}, "
          f"{os.cpu_count()} CPUs")  # fmt: skip
    for name in args.models:
        best, med = min(times[name]), statistics.median(times[name])
        train_flops = 3 * flops[name] * B
        print(
            f"{name}: forward {flops[name] / 1e9:.2f} GFLOPs/image ({flops[name] / 2e9:.2f} GMACs); step "
            f"{best:.2f} s min, {med:.2f} s median ({B / best:.2f} img/s; {train_flops / best / 1e9:.1f} GFLOP/s "
            "achieved)"
        )
        per_epoch = 3 * flops[name] * IMAGENET_TRAIN_IMAGES + 2 * flops[name] * IMAGENET_VAL_IMAGES  # + raw/EMA eval
        total = per_epoch * args.epochs
        cpu_days = IMAGENET_TRAIN_IMAGES * args.epochs / (B / best) / 86400
        print(f"  {args.epochs} epochs: {total / 1e18:.2f} EFLOP; on this CPU at this rate {cpu_days:,.0f} days")
        for tf in args.gpu_tflops:
            print(f"  at an assumed {tf:.0f} TFLOP/s sustained per GPU: {total / (tf * 1e12) / 3600:.0f} GPU-hours")


if __name__ == "__main__":
    main()
