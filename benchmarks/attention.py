"""Speed and peak tensor memory of every attention variant and backend against plain SDPA, in the same run.

    PYTHONPATH=src python benchmarks/attention.py            # N = 64, 256, 1024, 4096 (slow on CPU: minutes)
    PYTHONPATH=src python benchmarks/attention.py --quick    # N = 64, 256, 1024, fewer repeats
    PYTHONPATH=src python benchmarks/attention.py --device cuda --dtype bfloat16   # on a GPU
    # the decay paths at high resolution only, written beside the full table:
    PYTHONPATH=src python benchmarks/attention.py --sizes 1024 4096 --variants plain rmt sdt --tag decay_highres

Every cell times one mixer call (``x[B, N, C] -> [B, N, C]`` on a square grid, projections included) as the median
of repeats after a warm-up (which also compiles the flex path), forward under ``no_grad`` and forward+backward.
Ratios (``x_sdpa``) divide by the plain softmax mixer on SDPA at the same N and mode, measured in the same run.
Peak memory: one extra call measured by :func:`spatialvit.bench.peak_mib` (tensors allocated by the call and alive
at once, kernel scratch included; inputs and parameters excluded; on CPU the allocator's own running total, on CUDA
``torch.cuda.max_memory_allocated``). Also writes the parameter/FLOP cost of conv Q/K/V projections against the
linear one (FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode``), and the high-resolution training rows
of the linear-memory decay path (``chunked``) against plain SDPA and the other exact decay paths.
"""

from __future__ import annotations

import argparse
import csv
import math
import warnings
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from spatialvit.attention import create_attention
from spatialvit.attention.conv_qkv import conv_projection
from spatialvit.bench.measure import peak_mib, time_call
from spatialvit.report.tables import markdown_table, save_table
from spatialvit.runtime import OutputExistsError, claim_outputs

# (label, registered mixer, kwargs, backends to measure)
VARIANTS = [
    ("plain", "softmax", {}, ("sdpa", "reference")),
    ("conv_qkv", "conv_qkv", {}, ("sdpa",)),
    ("conv_qkv_separable", "conv_qkv", {"conv_mode": "separable"}, ("sdpa",)),
    ("positional", "positional", {"pos_grid": 16}, ("reference",)),
    ("gpsa", "gpsa", {"pos_grid": 16}, ("sdpa",)),
    ("rmt", "decay", {}, ("chunked", "factorised", "flex", "sdpa", "reference")),
    ("rmt_decomposed", "decay", {"decomposed": True}, ("sdpa",)),
    ("sdt", "cag", {}, ("chunked", "factorised", "flex", "sdpa", "reference")),
    ("sdt_warped", "cag", {"form": "warped"}, ("flex", "sdpa", "reference")),
]


def _parse(value: str):
    """A CSV cell back to int/float/None."""
    if value == "":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def call(mixer: torch.nn.Module, x: torch.Tensor, grid: tuple[int, int], backward: bool) -> None:
    """One forward (``no_grad``) or forward+backward of ``mixer``."""
    if backward:
        mixer(x, grid).float().square().mean().backward()
    else:
        with torch.no_grad():
            mixer(x, grid)


def projection_costs(dim: int, grid: tuple[int, int]) -> list[dict]:
    """Parameters and FLOPs per image of the Q/K/V projection: linear vs 3x3 full vs 3x3 separable conv."""
    rows = []
    x = torch.randn(1, dim, *grid)
    for label, module in [
        ("linear", torch.nn.Conv2d(dim, 3 * dim, 1)),  # a 1x1 conv is the linear projection, same params and FLOPs
        ("conv 3x3 full", conv_projection(dim, 3 * dim, 3, "full", True)),
        ("conv 3x3 separable", conv_projection(dim, 3 * dim, 3, "separable", True)),
    ]:
        with FlopCounterMode(display=False) as counter:
            module(x)
        rows.append(
            dict(
                projection=label,
                dim=dim,
                grid=f"{grid[0]}x{grid[1]}",
                params=sum(p.numel() for p in module.parameters()),
                gflops=counter.get_total_flops() / 1e9,
            )
        )
    base = rows[0]
    for r in rows:
        r["params_x_linear"] = r["params"] / base["params"]
        r["flops_x_linear"] = r["gflops"] / base["gflops"]
    return rows


def targets(rows: list[dict]) -> list[dict]:
    """The issue's CPU targets for the decay kernels, read off the measured rows (forward pass)."""
    ms = {(r["variant"], r["backend"], r["N"]): r for r in rows if r["mode"] == "fwd" and r.get("ms") is not None}
    sizes = sorted({n for _, _, n in ms})
    out = []
    for variant in ("rmt", "sdt"):
        for backend in ("flex", "factorised"):
            if (variant, backend, sizes[0]) not in ms:
                continue
            get = lambda n, b=backend, v=variant: ms.get((v, b, n))  # noqa: E731
            if get(256):
                out.append(
                    dict(
                        target=f"{variant} {backend} fwd time / plain sdpa at N=256 (<= 1.7)", value=get(256)["x_sdpa"]
                    )
                )
            if get(1024) and get(4096):
                ratio = get(4096)["peak_MiB"] / get(1024)["peak_MiB"]
                out.append(dict(target=f"{variant} {backend} fwd mem(4096)/mem(1024) (<= 4.5)", value=ratio))
            for n in (n for n in sizes if n >= 1024 and get(n) and ms.get((variant, "reference", n))):
                speedup = ms[(variant, "reference", n)]["ms"] / get(n)["ms"]
                out.append(
                    dict(target=f"{variant} {backend} fwd speed-up over reference at N={n} (>= 3)", value=speedup)
                )
    return out


def highres_training(rows: list[dict]) -> list[dict]:
    """Forward+backward at N >= 1024: the linear-memory ``chunked`` decay path against plain SDPA (time and memory
    ratios) and against the fastest other exact path of the same variant (time, memory)."""
    cells = {(r["variant"], r["backend"], r["N"]): r for r in rows if r["mode"] == "fwd+bwd" and r.get("ms")}
    out = []
    for (variant, backend, n), r in sorted(cells.items(), key=lambda c: (c[0][0], c[0][2])):
        if backend != "chunked" or n < 1024:
            continue
        others = [o for (v, b, m), o in cells.items() if v == variant and m == n and b not in ("chunked",)]
        best = min(others, key=lambda o: o["ms"]) if others else None
        out.append(
            dict(
                variant=variant,
                N=n,
                ms=r["ms"],
                peak_MiB=r["peak_MiB"],
                x_sdpa=r.get("x_sdpa"),
                mem_x_sdpa=r.get("mem_x_sdpa"),
                best_other=best["backend"] if best else None,
                best_other_ms=best["ms"] if best else None,
                best_other_MiB=best["peak_MiB"] if best else None,
                time_x_best=r["ms"] / best["ms"] if best else None,
            )
        )
    return out


def flex_kernel_check(n: int, batch: int, heads: int, head_dim: int, repeats: int) -> list[dict]:
    """Kernel-only forward times: SDPA, flex with no score_mod, flex with the fixed-decay score_mod (CPU check)."""
    from torch.nn.attention.flex_attention import flex_attention as flex

    from spatialvit.attention import ManhattanBias
    from spatialvit.attention.manhattan import gamma_schedule

    side = math.isqrt(n)
    q, k, v = (torch.randn(batch, heads, n, head_dim) for _ in range(3))
    rates = (-gamma_schedule(heads).log()).float()[None, :, None].expand(1, heads, n)
    decay = ManhattanBias((side, side), rates, constant=True).score_mod(batch)
    compiled = torch.compile(flex, dynamic=False)
    cases = [
        ("sdpa (no bias)", lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)),
        ("flex, no score_mod", lambda: compiled(q, k, v)),
        ("flex, decay score_mod", lambda: compiled(q, k, v, score_mod=decay)),
    ]
    rows = []
    with torch.no_grad():
        for label, fn in cases:
            rows.append(dict(kernel=label, N=n, ms=1e3 * time_call(fn, "cpu", repeats, budget_s=5.0)))
    for r in rows:
        r["x_sdpa"] = r["ms"] / rows[0]["ms"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024, 4096], help="token counts (squares)")
    parser.add_argument("--quick", action="store_true", help="N = 64, 256, 1024 and at most 5 repeats")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dim", type=int, default=128, help="embedding width C")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per cell (median reported)")
    parser.add_argument("--budget", type=float, default=3.0, help="stop repeating a cell after about this many s")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: least noise on shared cores)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--variants", nargs="+", default=None, help=f"subset of {[v[0] for v in VARIANTS]}")
    parser.add_argument("--modes", nargs="+", default=["fwd", "fwd+bwd"], choices=["fwd", "fwd+bwd"])
    parser.add_argument("--tag", default=None, help="table name suffix (default: the full table's name)")
    parser.add_argument("--out", default="benchmarks/results", help="folder for the CSV/JSON/Markdown tables")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace the tables of an earlier run in --out")
    parser.add_argument("--flex-kernel", action="store_true", help="only the kernel-level flex check at N=256")
    parser.add_argument("--from-csv", default=None, help="only re-print the tables and targets of a saved run")
    args = parser.parse_args()
    columns = ["variant", "backend", "N", "mode", "ms", "x_sdpa", "peak_MiB", "mem_x_sdpa", "note"]
    if args.from_csv:
        with open(args.from_csv, newline="") as f:
            rows = [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]
        print(markdown_table(rows, 2, columns) + "\n\n" + markdown_table(targets(rows), 2))
        print("\n" + markdown_table(highres_training(rows), 2))
        return
    sizes, repeats = ([64, 256, 1024], min(args.repeats, 5)) if args.quick else (args.sizes, args.repeats)
    for n in sizes:
        if math.isqrt(n) ** 2 != n:
            parser.error(f"--sizes must be perfect squares (square grids), got {n}")
    device = torch.device(args.device)
    tag = f"attention_{device.type}_{args.dtype}" + (f"_{args.tag}" if args.tag else "")
    if not args.flex_kernel:  # before measuring: an earlier run's tables are replaced only when asked
        names = (tag, f"{tag}_targets", f"{tag}_highres_training", "attention_projection_costs")
        try:
            claim_outputs(args.out, [f"{name}.*" for name in names], overwrite=args.overwrite)
        except OutputExistsError as err:
            parser.error(str(err))
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.flex_kernel:
        warnings.simplefilter("ignore", UserWarning)
        head_dim = args.dim // args.heads
        print(markdown_table(flex_kernel_check(256, args.batch, args.heads, head_dim, max(repeats, 20)), 2))
        return
    dtype = getattr(torch, args.dtype)
    variants = [v for v in VARIANTS if args.variants is None or v[0] in args.variants]
    warnings.simplefilter("ignore", UserWarning)

    cells = [(v, b, n, m) for n in sizes for m in args.modes for v in variants for b in v[3]]
    rows: list[dict] = []
    for (label, name, kwargs, _), backend, n, mode in tqdm(cells, desc="attention benchmark"):
        backward = mode == "fwd+bwd"
        row = dict(variant=label, backend=backend, N=n, mode=mode)
        if backend == "flex" and backward and device.type == "cpu":
            rows.append({**row, "ms": None, "note": "no flex backward on CPU"})
            continue
        mixer = create_attention(name, args.dim, num_heads=args.heads, backend=backend, **kwargs)
        mixer = mixer.to(device, dtype).train(backward)
        x = torch.randn(args.batch, n, args.dim, device=device, dtype=dtype, requires_grad=backward)
        grid = (math.isqrt(n), math.isqrt(n))
        fn = lambda: call(mixer, x, grid, backward)  # noqa: E731, B023  (used within this iteration only)
        row["ms"] = 1e3 * time_call(fn, device, repeats, budget_s=args.budget)
        row["peak_MiB"] = peak_mib(fn, device)
        rows.append(row)
    base = {(r["N"], r["mode"]): r for r in rows if r["variant"] == "plain" and r["backend"] == "sdpa"}
    for r in rows:
        b = base.get((r["N"], r["mode"]))
        if r["ms"] is not None and b is not None:
            r["x_sdpa"] = r["ms"] / b["ms"]
            r["mem_x_sdpa"] = r["peak_MiB"] / max(b["peak_MiB"], 1e-9)
    out = Path(args.out)
    save_table([{c: r.get(c) for c in columns} for r in rows], out, tag, digits=2)
    print(markdown_table(rows, 2, columns))

    goals = targets(rows)
    save_table(goals, out, f"{tag}_targets", digits=2)
    print("\nTargets\n" + markdown_table(goals, 2))

    highres = highres_training(rows)
    if highres:
        save_table(highres, out, f"{tag}_highres_training", digits=2)
        print("\nHigh-resolution training (forward+backward), the chunked decay path\n" + markdown_table(highres, 2))

    costs = projection_costs(args.dim, (math.isqrt(sizes[0]),) * 2)
    save_table(costs, out, "attention_projection_costs", digits=3)
    print("\nQ/K/V projection cost\n" + markdown_table(costs, 3))

    print(f"\nsettings: B={args.batch} C={args.dim} heads={args.heads} threads={args.threads} {device} {args.dtype}")
    print(f"tables written to {out}/{tag}.{{csv,json,md}}")


if __name__ == "__main__":
    main()
