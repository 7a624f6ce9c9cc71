"""Training-step time of a model on CPU with 1 torch thread against torch's default thread count, in one run.

    PYTHONPATH=src python benchmarks/train_threads.py --model vit_micro_patch4 --steps 20

Prints seconds per step for each setting and the ratio default/1-thread (> 1 means one thread is faster). On a
shared, busy CPU the default (one thread per core) can be many times slower: its threads wait on each other.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from spatialvit.models import create_model


def step_time(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, threads: int) -> float:
    """Mean seconds of one forward + backward + AdamW step with ``threads`` torch threads (after one warm-up)."""
    torch.set_num_threads(threads)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for i in range(steps + 1):
        if i == 1:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vit_micro_patch4")
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args()
    default = torch.get_num_threads()
    torch.manual_seed(0)
    model = create_model(args.model, num_classes=10, in_chans=1, img_size=args.img_size)
    x = torch.rand(args.batch_size, 1, args.img_size, args.img_size)
    y = torch.randint(0, 10, (args.batch_size,))
    one = step_time(model, x, y, args.steps, 1)
    many = step_time(model, x, y, args.steps, default)
    print(f"{args.model}, batch {args.batch_size}, {args.img_size}x{args.img_size}, {args.steps} steps")
    print(f"1 thread: {one:.4f} s/step   {default} threads (torch default): {many:.4f} s/step   ratio {many / one:.2f}")


if __name__ == "__main__":
    main()
