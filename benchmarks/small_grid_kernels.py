"""Inference attention kernels on CPU at the study's small grids: SDPA's fused kernel against the materialised
path (``q kᵀ`` by one batched GEMM — into the decay bias with ``baddbmm`` when there is one — softmax in place,
``@ v``), with and without SDT's per-image decay bias, in the same run.

    PYTHONPATH=src python benchmarks/small_grid_kernels.py --threads 2

Shapes: micro (batch 64, 4 heads, 8x8 grid + class token, head dim 16) and tiny (batch 64, 3 heads, 16x16 + class
token, head dim 64). The bias time includes forming it from the cached ``-D/2``. Prints microseconds per call
(median of ``--repeats`` timed batches) and the ratios to plain SDPA; the two paths agree to float rounding.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from spatialvit.attention.manhattan import half_distance, pad_rates
from spatialvit.report.tables import markdown_table

SHAPES = {"micro": (64, 4, (8, 8), 16), "tiny": (64, 3, (16, 16), 64)}


def timed(fn, repeats: int, calls: int = 20) -> float:
    """Median microseconds per call over ``repeats`` batches of ``calls`` calls (after a warm-up batch)."""
    times = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        if i:
            times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


@torch.no_grad()
def row(name: str, repeats: int) -> dict[str, object]:
    B, h, grid, d = SHAPES[name]
    N = grid[0] * grid[1] + 1
    torch.manual_seed(0)
    q, k, v = (torch.randn(B, h, N, d) for _ in range(3))
    rates, half, scale = torch.rand(B, h, N - 1), half_distance(grid, 1, torch.device("cpu"), torch.float32), d**-0.5

    def bias() -> torch.Tensor:
        rp = pad_rates(rates, 1)
        return (rp[..., :, None] + rp[..., None, :]).mul_(half)

    def materialised(b: torch.Tensor | None) -> torch.Tensor:
        qf, kt, vf = q.reshape(B * h, N, d), k.reshape(B * h, N, d).transpose(1, 2), v.reshape(B * h, N, d)
        logits = torch.bmm(qf, kt).mul_(scale) if b is None else b.view(B * h, N, N).baddbmm_(qf, kt, alpha=scale)
        return torch.bmm(torch.softmax(logits, -1, out=logits), vf).view(B, h, N, d)

    err = (materialised(bias()) - F.scaled_dot_product_attention(q, k, v, attn_mask=bias())).abs().max().item()
    us = {
        "sdpa": timed(lambda: F.scaled_dot_product_attention(q, k, v), repeats),
        "sdpa_bias": timed(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=bias()), repeats),
        "materialised": timed(lambda: materialised(None), repeats),
        "materialised_bias": timed(lambda: materialised(bias()), repeats),
    }
    out: dict[str, object] = {"shape": f"{name}: B={B} h={h} N={N} d={d}"}
    out |= {f"{key}_us": value for key, value in us.items()}
    out |= {f"x_{key}": value / us["sdpa"] for key, value in us.items() if key != "sdpa"}
    return out | {"max_abs_diff": err}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(markdown_table([row(name, args.repeats) for name in SHAPES], digits=2))


if __name__ == "__main__":
    main()
