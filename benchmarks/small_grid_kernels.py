"""Attention kernels on CPU at the grids the study and ``bench models`` use, against plain SDPA in the same run: the
evidence for the ``bmm`` rule of ``auto`` (backend.CPU_BMM_MAX_TOKENS).

    PYTHONPATH=src python benchmarks/small_grid_kernels.py --threads 2

Per shape (batch, heads, grid + a class token, head dim), q, k and v laid out as after a head split (``[B, N, h,
d]`` memory), SDT's per-image rates: inference (no gradients) and training (forward + backward, gradients for q, k, v
and the rates) of plain SDPA, SDPA with the dense pairwise bias (formed from the cached ``-D/2``), the ``chunked``
kernel, and the ``bmm`` path without a bias and with the pairwise decay, in one group of images (as ``auto`` runs it)
and in groups of 1 MiB of logits (``*_1mib``: the chunked kernel's block size). Prints milliseconds per call (median of
``--repeats`` timed batches, the kernels taking turns batch by batch) and the ratios to plain SDPA in the same mode
(``x_*``: < 1 is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import spatialvit.attention.kernels as kernels
from spatialvit.attention.kernels import bmm_attention, pairwise_decay_attention, pairwise_decay_bmm
from spatialvit.attention.manhattan import half_distance, pad_rates, pair_bias
from spatialvit.report.tables import markdown_table

SHAPES = {  # batch, heads, grid, head dim
    "micro 8x8": (64, 4, (8, 8), 16),
    "12x12, d 16": (64, 4, (12, 12), 16),
    "12x12, d 64": (64, 3, (12, 12), 64),
    "tiny 16x16": (64, 3, (16, 16), 64),
}


def kernel_calls(B: int, h: int, grid: tuple[int, int], d: int, train: bool) -> dict[str, Callable[[], None]]:
    """One call of every kernel on fresh inputs of this shape (a backward pass too when ``train``)."""
    N = grid[0] * grid[1] + 1
    q, k, v = (torch.randn(B, N, h, d).transpose(1, 2).requires_grad_(train) for _ in range(3))
    rates = torch.rand(B, h, N - 1, requires_grad=train)
    half = half_distance(grid, 1, torch.device("cpu"), torch.float32)
    grad = torch.randn(B, N, h, d).transpose(1, 2)

    def run(attend: Callable[[], torch.Tensor], block: int = kernels.BMM_BLOCK_ELEMENTS) -> Callable[[], None]:
        def call() -> None:
            kernels.BMM_BLOCK_ELEMENTS = block
            with torch.set_grad_enabled(train):
                out = attend()
                if train:
                    out.backward(grad)

        return call

    def dense() -> torch.Tensor:
        return pair_bias(pad_rates(rates, 1), half)

    return {
        "sdpa": run(lambda: F.scaled_dot_product_attention(q, k, v)),
        "sdpa_bias": run(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=dense())),
        "chunked": run(lambda: pairwise_decay_attention(q, k, v, pad_rates(rates, 1), grid, 1)),
        "bmm": run(lambda: bmm_attention(q, k, v)),
        "bmm_bias": run(lambda: pairwise_decay_bmm(q, k, v, pad_rates(rates, 1), grid, 1)),
        "bmm_1mib": run(lambda: bmm_attention(q, k, v), kernels.BLOCK_ELEMENTS),
        "bmm_bias_1mib": run(lambda: pairwise_decay_bmm(q, k, v, pad_rates(rates, 1), grid, 1), kernels.BLOCK_ELEMENTS),
    }


def row(name: str, train: bool, repeats: int, calls: int = 5) -> dict[str, object]:
    B, h, grid, d = SHAPES[name]
    fns = kernel_calls(B, h, grid, d, train)
    times: dict[str, list[float]] = {key: [] for key in fns}
    for i in range(repeats + 1):  # round-robin batches of calls; the first is a warm-up
        for key, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            if i:
                times[key].append((time.perf_counter() - t0) / calls * 1e3)
    ms = {key: statistics.median(t) for key, t in times.items()}
    out: dict[str, object] = {"shape": f"{name}: B={B} h={h} N={grid[0] * grid[1] + 1} d={d}"}
    out["mode"] = "train" if train else "infer"
    out["sdpa_ms"] = ms["sdpa"]
    return out | {f"x_{key}": value / ms["sdpa"] for key, value in ms.items() if key != "sdpa"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = [row(name, train, args.repeats) for name in SHAPES for train in (False, True)]
    print(markdown_table(rows, digits=2))
    print(f"\n{args.threads} thread(s), {args.repeats} round-robin batches of 5 calls, float32")


if __name__ == "__main__":
    main()
