"""The configs of the probes and what checking them needs, without torch (the command line reads them to build
its flags): :class:`SweepConfig` (one sensitivity sweep), :class:`SensitivityRunConfig` (``spatialvit
sensitivity``), grids and mask fills, the clustering methods of patch association.

:mod:`.sweep`, :mod:`.sensitivity_run` and :mod:`.association` re-export these names; the grids live in
:mod:`.grids`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import run_options as run
from ..config import Config, option
from .grids import FILLS, Grid, check_ratio, parse_grids, to_grid  # noqa: F401  (re-exported)

CLUSTER_METHODS = ("spectral", "agglomerative")


@dataclass(frozen=True)
class SweepConfig(Config):
    """The settings of a sensitivity sweep (one definition for the library, the study and the command line).

    ``batch_size`` and ``limit`` say how a workflow loads the test images; :func:`sensitivity_sweep` takes a loader.
    """

    shuffle_grids: list[Any] = option(
        help="grids whose blocks are shuffled: G (G x G blocks) or RxC", factory=lambda: [2, 4, 8], parse=parse_grids,
        metavar="GRIDS",
    )  # fmt: skip
    mask_grids: list[Any] | None = option(
        None, "grids whose blocks are masked (none: the shuffle grids)", parse=parse_grids, metavar="GRIDS"
    )
    mask_ratios: list[float] = option(
        help="fractions of the blocks to mask, each in [0, 1]", factory=lambda: [0.25, 0.5, 0.75], metavar="RATIOS"
    )
    mask_fill: str = option(
        "zero", "zero: 0 after normalisation; mean: the data-set mean; noise: N(0, 1) after normalisation",
        metavar="|".join(FILLS),
    )  # fmt: skip
    rotate_grids: list[Any] = option(
        help="grids whose blocks each turn by a random multiple of 90 degrees (none: no rotation)", factory=list,
        parse=parse_grids,
        metavar="GRIDS",
    )  # fmt: skip
    repeats: int = option(3, "random draws per setting (standard errors need at least 2)")
    exclude_identity: bool = option(True, "a shuffle never leaves an image unchanged")
    shared: bool = option(False, "one random draw for all images of a batch")
    batch_size: int = option(256, "images per forward pass")
    limit: int | None = option(None, "use only the first N test images (none: all)")

    def validate(self) -> None:
        if self.repeats < 1:
            raise ValueError(f"repeats must be a positive int, got {self.repeats!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(
                f"limit must be a positive number of images, got {self.limit} (for all images leave it out: "
                "--limit none, or limit: null in YAML)"
            )
        # The checks of make_settings, without building the settings (that needs torch).
        if self.mask_fill not in FILLS:
            raise ValueError(f"mask_fill must be one of {', '.join(FILLS)}, got {self.mask_fill!r}")
        for grid in [*self.shuffle_grids, *(self.mask_grids or []), *self.rotate_grids]:
            to_grid(grid)
        for ratio in self.mask_ratios:
            check_ratio(ratio)

    def settings(self) -> list[Any]:
        """Every perturbation setting of the sweep (:class:`~spatialvit.probes.perturb.Perturbation`, checked)."""
        from .perturb import make_settings

        return make_settings(
            shuffle_grids=self.shuffle_grids,
            mask_grids=self.mask_grids,
            mask_ratios=self.mask_ratios,
            mask_fill=self.mask_fill,
            rotate_grids=self.rotate_grids,
        )


@dataclass(frozen=True)
class SensitivityRunConfig(Config):
    """A sensitivity benchmark run: which models, which data, the sweep, and where the results go."""

    checkpoints: list[str] = option(help="spatialvit checkpoints to compare", factory=list)
    timm_models: list[str] = option(
        help="pretrained timm models by name (needs the optional 'timm' extra)", factory=list
    )
    timm_random_init: bool = option(False, "build the timm models without pretrained weights, sized for the data")
    data: str | None = option(None, "dataset NAME or NAME:PATH (none: the data the first checkpoint was trained on)")
    other_data: bool = option(
        False, "score checkpoints on data or an image size other than they were trained on (refused without it)"
    )
    split: str = option("test", "split to evaluate", metavar="test|train")
    img_size: int | None = option(None, "load images at N x N (none: the size the first checkpoint was trained at)")
    sweep: SweepConfig = option(help="the sweep", factory=SweepConfig)
    seed: int = run.seed("every perturbation (the base seed)")
    device: str = run.device()
    amp: bool = option(True, "autocast on GPU")
    examples: int = option(4, "images in examples.png (0: no figure)")
    out: str = run.out("results/sensitivity", "output folder")
    overwrite: bool = run.overwrite("the tables and figures")
    progress: bool = run.progress()

    def validate(self) -> None:
        if self.split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {self.split!r}")
        if self.examples < 0:
            raise ValueError(f"examples must be >= 0, got {self.examples}")
        run.check(self)
