"""Where the time of the decay ViTs goes, per op, next to the plain ViT: ``torch.profiler`` on whole models.

    PYTHONPATH=src python benchmarks/profile_models.py --size micro --img-size 32
    PYTHONPATH=src python benchmarks/profile_models.py --size tiny --img-size 64 --batch 16 --steps 2

For each mode (a training step: forward, cross-entropy, backward, AdamW step; an inference batch under no_grad) and
each family (plain, RMT, SDT) the script runs warm-up calls, then ``--steps`` calls under the profiler, and prints
the self CPU time per step of every op, summed by op name, for the plain ViT and each decay family, with the
difference: the ops that make up a family's extra time. ``--families`` picks others (``gpsa``, ``convqkv``, ...).
The profiler adds its own overhead to every op, so read the differences, not the totals, and compare runs made on
the same machine in one sitting (``--threads 1`` by default: less noise from other work on a shared CPU).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import torch
from torch.profiler import ProfilerActivity, profile

from spatialvit import create_model
from spatialvit.report.tables import markdown_table


def self_times(name: str, img_size: int, batch: int, steps: int, train: bool) -> dict[str, float]:
    """Self CPU ms per step of every op (by name) of a training step or an inference batch of model ``name``."""
    torch.manual_seed(0)
    model = create_model(name, img_size=img_size, num_classes=10)
    x, y = torch.rand(batch, 3, img_size, img_size), torch.randint(0, 10, (batch,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train(train)

    def step() -> None:
        if train:
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(x)

    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    times: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        times[event.key] += event.self_cpu_time_total / steps / 1e3
    return times


def difference(base: dict[str, float], other: dict[str, float], top: int) -> list[dict[str, object]]:
    """The ops with the largest time difference ``other - base`` (ms per step), and the totals."""
    ops = sorted(set(base) | set(other), key=lambda k: -abs(other.get(k, 0.0) - base.get(k, 0.0)))
    rows = [
        {"op": op[:58], "plain_ms": base.get(op, 0.0), "family_ms": other.get(op, 0.0)}
        for op in ops[:top]
        if abs(other.get(op, 0.0) - base.get(op, 0.0)) >= 0.05
    ]
    rows.append({"op": "total (self CPU)", "plain_ms": sum(base.values()), "family_ms": sum(other.values())})
    for row in rows:
        row["extra_ms"] = row["family_ms"] - row["plain_ms"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="micro")
    parser.add_argument("--patch", type=int, default=4)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--families", default="rmt,sdt")
    parser.add_argument("--modes", default="train,infer")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plain = f"vit_{args.size}_patch{args.patch}"
    for mode in args.modes.split(","):
        train = mode == "train"
        base = self_times(plain, args.img_size, args.batch, args.steps, train)
        for family in args.families.split(","):
            name = f"vit_{family}_{args.size}_patch{args.patch}"
            rows = difference(base, self_times(name, args.img_size, args.batch, args.steps, train), args.top)
            print(f"\n{name} vs {plain}, {mode}, batch {args.batch}, {args.threads} thread(s): ms per step")
            print(markdown_table(rows, 2))


if __name__ == "__main__":
    main()
