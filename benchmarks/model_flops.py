"""Parameters and FLOPs of the hierarchical RMT and SDT-H backbones, next to the published numbers.

    PYTHONPATH=src python benchmarks/model_flops.py [--out benchmarks/results]

Counts one forward pass of one image with PyTorch's ``torch.utils.flop_counter.FlopCounterMode`` (via
:func:`spatialvit.models.measure_complexity`), which counts **2 FLOPs per multiply-accumulate**; the papers'
"FLOPs" are multiply-accumulates, so the comparable column is ``gmacs`` (= ``gflops / 2``). Attention runs on the
``sdpa`` backend (plain ``q k^T`` and ``A v`` with the head dim, rows and columns separately in decomposed stages),
the convention of the papers' counters. Writes ``model_flops.{csv,json,md}`` (published sizes at 224x224) and
``model_flops_small_input.{csv,json,md}`` (the 32x32 variants) to ``--out``.
"""

from __future__ import annotations

import argparse
import time

from spatialvit.models import HierarchicalViT, create_model, measure_complexity
from spatialvit.report.tables import markdown_table, save_table
from spatialvit.runtime import OutputExistsError, claim_outputs

# RMT: exact counts from its training logs (qhfan/RMT RMT_log/rmt_{t,s,m}.txt; "m" is RMT-B), FLOPs from its README.
# SDT-H: rounded sizes and FLOPs from secondary summaries of the paper (docs/hierarchical.md).
PUBLISHED = {
    "rmt_t": (14_334_216, 2.5),
    "rmt_s": (26_967_240, 4.5),
    "rmt_b": (54_154_896, 9.7),
    "sdt_t": (14_000_000, 2.7),
    "sdt_s": (27_000_000, 4.8),
    "sdt_b": (54_000_000, 10.8),
}
SMALL_INPUT = ["rmt_micro", "sdt_micro", "rmt_t_cifar", "sdt_t_cifar", "rmt_s_cifar", "sdt_s_cifar"]
SMALL_INPUT += ["rmt_b_cifar", "sdt_b_cifar"]


def _attention_flops(by_operator: dict[str, int]) -> int:
    return sum(n for op, n in by_operator.items() if "scaled_dot_product" in op or "attention" in op or op == "bmm")


def _build(name: str) -> HierarchicalViT:
    return create_model(name, attn_kwargs={"backend": "sdpa"})


def measure(name: str, img_size: int | None = None) -> dict:
    model = _build(name)
    c = measure_complexity(model, img_size)
    return dict(
        model=name,
        img_size=c.img_size[0],
        params=c.params,
        gflops=c.flops / 1e9,
        gmacs=c.macs / 1e9,
        attention_gmacs=_attention_flops(c.by_operator) / 2e9,
        conv_gmacs=c.by_operator.get("convolution", 0) / 2e9,
        grids="/".join(f"{h}" if h == w else f"{h}x{w}" for h, w in model.stage_grids(c.img_size)),
        decomposed_stages=",".join(str(i + 1) for i, d in enumerate(model.decomposed) if d) or "-",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="benchmarks/results", help="folder for the tables (default: %(default)s)")
    parser.add_argument("--overwrite", action="store_true", help="replace the tables of an earlier run in --out")
    args = parser.parse_args()
    try:
        claim_outputs(args.out, ["model_flops.*", "model_flops_small_input.*"], overwrite=args.overwrite)
    except OutputExistsError as err:
        parser.error(str(err))

    rows: list[dict] = []
    for name, (params, gmacs) in PUBLISHED.items():
        start = time.perf_counter()
        row = measure(name)
        rmt = next((r for r in rows if r["model"] == name.replace("sdt_", "rmt_", 1)), None)
        row.update(
            params_published=params,
            params_diff=row["params"] - params if name.startswith("rmt_") else None,
            gate_params=row["params"] - rmt["params"] if name.startswith("sdt_") and rmt else None,
            gmacs_published=gmacs,
            gmacs_vs_published=row["gmacs"] / gmacs - 1,
        )
        rows.append(row)
        took = time.perf_counter() - start
        print(f"{name}: {row['params']:,} params, {row['gmacs']:.3f} GMACs ({took:.1f} s)", flush=True)
    small = [measure(name) for name in SMALL_INPUT]

    print("\nAt 224x224, batch 1 (gflops: FlopCounterMode, 2 per multiply-accumulate; gmacs = gflops / 2):\n")
    print(markdown_table(rows, 3))
    print("\nSmall-input variants at 32x32:\n")
    print(markdown_table(small, 3))
    for table, name in ((rows, "model_flops"), (small, "model_flops_small_input")):
        for ext, path in save_table(table, args.out, name, digits=3).items():
            print(f"wrote {ext}: {path}")


if __name__ == "__main__":
    main()
