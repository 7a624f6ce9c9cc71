"""Data-path speed as ratios against a baseline timed in the same run.

1. One epoch of a ``DataLoader`` over an in-memory uint8 dataset of CIFAR size: batched ``__getitems__`` against
   the per-item path (the same dataset with ``__getitems__`` hidden).
2. Crop + flip of one batch: the vectorised ``BatchTransform`` against a per-image Python loop doing the same.
3. The full policy (crop, flip, RandAugment x2, mixup/cutmix) per batch, relative to crop + flip alone.

    PYTHONPATH=src python benchmarks/data_loading.py            # 50,000 images, batches of 256, 1 thread
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from spatialvit.data import DatasetInfo, TensorImageDataset, build_train_transform
from spatialvit.report.tables import markdown_table
from spatialvit.train.config import TrainConfig


class PerItem(Dataset):
    """The same dataset without ``__getitems__``: the DataLoader falls back to one ``__getitem__`` per image."""

    def __init__(self, base: TensorImageDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.base[i]


def per_image_crop_flip(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Baseline: the per-image loop a torchvision-style pipeline runs (pad, random window, maybe mirror)."""
    out = []
    H, W = images.shape[-2:]
    for img in images:
        dy, dx = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()
        crop = F.pad(img, (pad,) * 4)[:, dy : dy + H, dx : dx + W]
        out.append(crop.flip(-1) if torch.rand((), generator=generator) < 0.5 else crop)
    return torch.stack(out)


def best_time(fn: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=50_000, help="images in the in-memory dataset")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 makes the two paths comparable)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)

    images = torch.randint(0, 256, (args.n, 3, 32, 32), dtype=torch.uint8, generator=g)
    info = DatasetInfo("bench", 10, 3, (32, 32), (0.5,) * 3, (0.25,) * 3)
    ds = TensorImageDataset(images, torch.randint(0, 10, (args.n,), generator=g), info)

    def epoch(dataset: Dataset) -> Callable[[], None]:
        return lambda: [None for _ in DataLoader(dataset, batch_size=args.batch_size, shuffle=True)]

    t_items = best_time(epoch(PerItem(ds)), args.repeats)
    t_batched = best_time(epoch(ds), args.repeats)

    x, y = ds.get_batch(range(args.batch_size))
    crop_flip = build_train_transform(TrainConfig(crop_padding=4, flip=True), 10)
    full = build_train_transform(
        TrainConfig(crop_padding=4, flip=True, randaugment_ops=2, mixup_alpha=0.8, cutmix_alpha=1.0), 10
    )
    reps = 10 * args.repeats
    t_loop = best_time(lambda: per_image_crop_flip(x, 4, g), reps)
    t_vec = best_time(lambda: crop_flip(x, y, g), reps)
    t_full = best_time(lambda: full(x, y, g), reps)

    rows = [
        {"what": f"DataLoader epoch, {args.n} images", "baseline": "per-item __getitem__", "baseline_s": t_items,
         "ours": "__getitems__", "ours_s": t_batched, "speedup": t_items / t_batched},
        {"what": f"crop+flip, batch {args.batch_size}", "baseline": "per-image loop", "baseline_s": t_loop,
         "ours": "BatchTransform", "ours_s": t_vec, "speedup": t_loop / t_vec},
        {"what": f"full policy, batch {args.batch_size}", "baseline": "crop+flip BatchTransform", "baseline_s": t_vec,
         "ours": "+RandAugment x2 +mixup/cutmix", "ours_s": t_full, "speedup": t_vec / t_full},
    ]  # fmt: skip
    for r in rows:
        for k in ("baseline_s", "ours_s", "speedup"):
            r[k] = round(r[k], 4)
    print(f"torch {torch.__version__}, {args.threads} thread(s); best of {args.repeats} (epochs) / {reps} (batches)")
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
