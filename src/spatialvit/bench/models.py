"""Training and inference speed and peak memory of whole models, side by side with a baseline in the same run."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models import create_model, list_models
from ..report.tables import save_table
from ..runtime import claim_outputs, progress_bar, resolve_device
from .config import BenchConfig
from .measure import peak_mib, time_call

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
TIMM_REFERENCE = "vit_tiny_patch16_224"


def run_bench(config: BenchConfig) -> tuple[list[dict[str, Any]], dict[str, Path]]:
    """Every family at ``config.size``/``config.patch``, measured in one run; writes ``bench_models.*``."""
    claim_outputs(config.out, ["bench_models.*"], overwrite=config.overwrite)
    if config.threads:
        torch.set_num_threads(config.threads)
    rows = bench_models(family_models(config.size, config.patch), config)
    return rows, save_table(rows, config.out, "bench_models")


def family_models(size: str = "micro", patch: int = 4) -> list[str]:
    """Every registered ViT family at ``size``/``patch``, the plain ViT first (e.g. ``vit_micro_patch4``)."""
    plain = f"vit_{size}_patch{patch}"
    names = list_models(f"vit_*{size}_patch{patch}")
    if plain not in names:
        raise ValueError(f"no registered model {plain!r}: size must be micro, tiny or small and patch 4 or 16")
    return [plain] + [n for n in names if n != plain]


def _timm_model(img_size: int, patch: int, in_chans: int, num_classes: int) -> nn.Module | None:
    """timm's ViT-Tiny recipe at our image/patch size, or ``None`` when timm is not installed."""
    try:
        import timm
    except ImportError:
        return None
    return timm.create_model(
        TIMM_REFERENCE,
        pretrained=False,
        img_size=img_size,
        patch_size=patch,
        in_chans=in_chans,
        num_classes=num_classes,
    )


class _Steps:
    """A model's training step (forward + cross-entropy + backward + AdamW step) and inference batch, timed."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, dtype: str) -> None:
        self.model, self.x, self.y = model, x, y
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.autocast = torch.autocast(x.device.type, dtype=DTYPES[dtype], enabled=dtype != "float32")
        self.times: dict[str, list[float]] = {"train": [], "infer": []}

    def train_step(self) -> None:
        self.model.train()
        with self.autocast:
            loss = nn.functional.cross_entropy(self.model(self.x).float(), self.y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    @torch.no_grad()
    def infer(self) -> None:
        self.model.eval()
        with self.autocast:
            self.model(self.x)

    def time(self, mode: str) -> None:
        """One more timed call (``mode``: train or infer)."""
        self.times[mode].append(time_call(self.train_step if mode == "train" else self.infer, self.x.device, 1, 0))

    def row(self) -> dict[str, float]:
        """Parameters (millions), images/s (median of the timed calls) and peak MiB of a step and of a batch."""
        n = len(self.x)
        return {
            "params_m": sum(p.numel() for p in self.model.parameters()) / 1e6,
            "train_img_s": n / statistics.median(self.times["train"]),
            "infer_img_s": n / statistics.median(self.times["infer"]),
            "train_peak_mib": peak_mib(self.train_step, self.x.device),
            "infer_peak_mib": peak_mib(self.infer, self.x.device),
        }


def bench_models(models: list[str], config: BenchConfig, num_classes: int = 10) -> list[dict[str, Any]]:
    """One row per model: parameters, training and inference images/s, peak memory (MiB) of a training step and
    of an inference batch, and the speed ratios against the first model (``x_base_*``, > 1: faster).

    A training step is forward + cross-entropy + backward + AdamW step on random images ``[batch_size, in_chans,
    img_size, img_size]`` (``config``'s); inference is a forward under ``no_grad``. ``dtype='bfloat16'`` runs under
    autocast. Every model is built and warmed up first; then ``repeats`` rounds each time one training step and one
    inference batch of every model in turn (round-robin), and the medians give the images/s. Peak memory: one more
    call each, apart from the timed ones. With ``config.timm`` and timm installed, timm's ViT-Tiny recipe at the
    same patch size is appended."""
    img_size, batch_size, in_chans, dtype = config.img_size, config.batch_size, config.in_chans, config.dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if not models:
        raise ValueError("models must name at least one registered model")
    device = resolve_device(config.device)
    x = torch.rand(batch_size, in_chans, img_size, img_size, device=device)
    y = torch.randint(0, num_classes, (batch_size,), device=device)
    builders: list[tuple[str, Any]] = [
        (n, lambda n=n: create_model(n, img_size=img_size, in_chans=in_chans, num_classes=num_classes)) for n in models
    ]
    patch = getattr(builders[0][1](), "patch_size", 16)
    if config.timm and _timm_model(img_size, patch, in_chans, num_classes) is not None:
        builders.append((f"timm:{TIMM_REFERENCE}", lambda: _timm_model(img_size, patch, in_chans, num_classes)))

    steps = []
    for _, build in builders:
        torch.manual_seed(0)
        step = _Steps(build().to(device), x, y, dtype)
        step.train_step()  # warm-up; allocates the optimiser state before any measurement
        step.infer()
        steps.append(step)
    # Round-robin: every round times one training step and one inference batch of every model in turn, so a change
    # of load on a shared machine falls on all models alike and the ratios of the medians stay comparable.
    for _ in progress_bar(range(config.repeats), desc="bench models", enabled=config.progress):
        for step in steps:
            step.time("train")
            step.time("infer")
    rows = [{"model": name, **step.row()} for (name, _), step in zip(builders, steps)]
    base = rows[0]
    for row in rows:
        row["x_base_train"] = row["train_img_s"] / base["train_img_s"]
        row["x_base_infer"] = row["infer_img_s"] / base["infer_img_s"]
    return rows
