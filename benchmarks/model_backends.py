"""Whole-model training and inference throughput of the decay ViTs on each attention backend, against the plain
ViT in the same run (CPU, one thread, batch 64 of 1x32x32 images, micro models: an 8x8 token grid).

    PYTHONPATH=src python benchmarks/model_backends.py

It checks the ``auto`` backend choice at the small grids the study uses: the table says which backend is fastest
for a whole model there, next to what ``auto`` picks.
"""

from __future__ import annotations

import torch

from spatialvit import create_model
from spatialvit.bench.measure import time_call
from spatialvit.report.tables import markdown_table

MODELS = {"vit_micro_patch4": ["sdpa"], "vit_rmt_micro_patch4": ["auto", "factorised", "sdpa", "reference"]}
MODELS["vit_sdt_micro_patch4"] = MODELS["vit_rmt_micro_patch4"]


def main() -> None:
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(64, 1, 32, 32, generator=gen), torch.randint(0, 10, (64,), generator=gen)
    rows, base = [], {}
    for name, backends in MODELS.items():
        for backend in backends:
            torch.manual_seed(0)
            model = create_model(name, in_chans=1, attn_kwargs={"backend": backend})
            opt = torch.optim.AdamW(model.parameters())

            def step(model: torch.nn.Module = model, opt: torch.optim.Optimizer = opt) -> None:
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                opt.step()

            train = 64 / time_call(step, "cpu", repeats=8, warmup=2)
            with torch.no_grad():
                infer = 64 / time_call(lambda model=model: model(x), "cpu", repeats=8, warmup=2)
            base = base or {"train": train, "infer": infer}
            rows.append(
                dict(
                    model=name,
                    backend=backend,
                    train_img_s=train,
                    infer_img_s=infer,
                    x_plain_train=train / base["train"],
                    x_plain_infer=infer / base["infer"],
                )
            )
    print(markdown_table(rows, 2))


if __name__ == "__main__":
    main()
