"""Whole-model training and inference throughput of the decay ViTs on each attention backend, against the plain
ViT in the same run: the evidence for the ``auto`` backend rule at the grids the study and ``bench models`` use.

    PYTHONPATH=src python benchmarks/model_backends.py                                  # micro, 8x8 grid, 1 thread
    PYTHONPATH=src python benchmarks/model_backends.py --size tiny --img-size 64 --batch 16 --repeats 4

Every (model, backend) pair is built once; the timed calls go round-robin over all pairs (``--repeats`` rounds), so
a load change on a shared machine hits every pair alike, and each pair's median over the rounds is reported, as
images/s and relative to the plain ViT on ``auto`` (``x_plain_*``, > 1: faster). ``auto_picks`` names the kernel
``auto`` chose for the first attention layer of that model in training and in inference.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from spatialvit import create_model
from spatialvit.attention import resolve_backend
from spatialvit.report.tables import markdown_table, save_table
from spatialvit.runtime import OutputExistsError, claim_outputs

DECAY = ["auto", "bmm", "chunked", "factorised", "sdpa"]
BACKENDS = {"": ["auto", "sdpa"], "rmt": DECAY, "sdt": DECAY}  # the first pair (plain ViT, auto) is the baseline


def auto_picks(model: torch.nn.Module, x: torch.Tensor) -> str:
    """The kernels ``auto`` resolves for the first attention layer in training and in inference."""
    attn, grid = model.blocks[0].attn, model.grid
    picks = []
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            tokens = torch.randn(x.shape[0], model.num_prefix_tokens + grid[0] * grid[1], attn.dim, requires_grad=grad)
            q = attn.project(tokens, grid)[0]
            picks.append(resolve_backend("auto", attn.supported_backends, q, attn.spatial_bias(tokens, grid)))
    return " / ".join(picks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="micro")
    parser.add_argument("--patch", type=int, default=4)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10, help="round-robin rounds (the median is reported)")
    parser.add_argument("--out", default=None, help="also write the table here (CSV/JSON/Markdown)")
    parser.add_argument("--overwrite", action="store_true", help="replace the tables of an earlier run in --out")
    args = parser.parse_args()
    table = f"model_backends_{args.size}_{args.img_size}"
    if args.out:
        try:
            claim_outputs(args.out, [f"{table}.*"], overwrite=args.overwrite)
        except OutputExistsError as err:
            parser.error(str(err))
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.img_size, args.img_size, generator=gen)
    y = torch.randint(0, 10, (args.batch,), generator=gen)

    pairs = []
    for family, backends in BACKENDS.items():
        name = "_".join(filter(None, ["vit", family, args.size, f"patch{args.patch}"]))
        for backend in backends:
            torch.manual_seed(0)
            model = create_model(name, img_size=args.img_size, num_classes=10, attn_kwargs={"backend": backend})
            opt = torch.optim.AdamW(model.parameters())

            def train(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
                model.train()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
                opt.zero_grad(set_to_none=True)

            @torch.no_grad()
            def infer(model: torch.nn.Module = model) -> None:
                model.eval()
                model(x)

            train(), infer()  # warm-up
            picks = auto_picks(model, x) if backend == "auto" else ""
            pairs.append(dict(model=name, backend=backend, auto_picks=picks, fns=(train, infer), times=([], [])))

    for _ in range(args.repeats):
        for pair in pairs:
            for fn, times in zip(pair["fns"], pair["times"]):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)

    rows = []
    for pair in pairs:
        train_s, infer_s = (statistics.median(t) for t in pair["times"])
        rows.append(
            dict(
                model=pair["model"],
                backend=pair["backend"],
                auto_picks=pair["auto_picks"],
                train_img_s=args.batch / train_s,
                infer_img_s=args.batch / infer_s,
            )
        )
    for row in rows:
        row["x_plain_train"] = row["train_img_s"] / rows[0]["train_img_s"]
        row["x_plain_infer"] = row["infer_img_s"] / rows[0]["infer_img_s"]
    print(markdown_table(rows, 2))
    print(
        f"\n{args.size} patch {args.patch}, {args.img_size}x{args.img_size}, batch {args.batch}, "
        f"{args.threads} thread(s), {args.repeats} rounds"
    )
    if args.out:
        save_table(rows, args.out, table, digits=3)


if __name__ == "__main__":
    main()
