"""The config of ``spatialvit bench models``, without torch (the command line reads it to build its flags).
:mod:`.models` re-exports it."""

from __future__ import annotations

from dataclasses import dataclass

from .. import run_options as run
from ..config import Config, option

DTYPE_NAMES = ("float32", "bfloat16")


@dataclass(frozen=True)
class BenchConfig(Config):
    """``spatialvit bench models``: the families at one size, the input, and how long to measure."""

    size: str = option("micro", "model size", metavar="micro|tiny|small")
    patch: int = option(4, "patch size", metavar="4|16")
    img_size: int = option(32, "image size N x N")
    in_chans: int = option(3, "input channels")
    batch_size: int = option(64, "images per step")
    device: str = run.device("cpu")
    dtype: str = option("float32", "float32, or bfloat16 autocast", metavar="|".join(DTYPE_NAMES))
    repeats: int = option(5, "timed calls per measurement (the median is reported)")
    threads: int | None = run.threads()
    timm: bool = option(True, "add timm's ViT-Tiny recipe as a reference when timm is installed")
    out: str = run.out("results/bench", "output folder")
    overwrite: bool = run.overwrite("the tables")
    progress: bool = run.progress()

    def validate(self) -> None:
        from ..catalog import PATCHES, SIZES

        if self.size not in SIZES or self.patch not in PATCHES:
            raise ValueError(f"size must be one of {sorted(SIZES)} and patch one of {sorted(PATCHES)}")
        if self.dtype not in DTYPE_NAMES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {self.dtype!r}")
        for name in ("img_size", "in_chans", "batch_size", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        run.check(self)
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or none, got {self.threads}")
