"""The study configuration: a dataset, a list of models, one :class:`TrainConfig` shared by all models (with
per-model ``model_kwargs``), the sensitivity sweep (:class:`SweepConfig`) and the probe settings, the seeds and an
output folder. YAML via ``StudyConfig.from_yaml``; defaults and help text live in the fields (:mod:`spatialvit.config`).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import run_options as run
from .._names import unknown_name
from ..catalog import default_models
from ..config import AUTO, DEFAULT_DATA, DEVICES, Config, option
from ..probes.config import SweepConfig, parse_grids, to_grid
from ..train.config import TrainConfig

DEFAULT_MODELS = default_models()
# Keys of ``train`` that the study sets itself, per model.
STUDY_KEYS = (
    "model",
    "data",
    "img_size",
    "model_kwargs",
    "seed",
    "out",
    "resume",
    "overwrite",
    "stop_after",
    "progress",
)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@dataclass(frozen=True)
class ProbeConfig(Config):
    """Attention probes of the ViTs: images for attention distances, and the example maps' query patch."""

    images: int = option(64, "test images averaged for attention distances and patch association")
    example_images: int = option(2, "images shown in attention_maps.png")
    query: list[int] | None = option(None, "(row, col) of the query token in attention_maps.png (none: the centre)")

    def validate(self) -> None:
        if self.images < 1 or self.example_images < 1:
            raise ValueError("probes.images and probes.example_images must be >= 1")


@dataclass(frozen=True)
class StudyConfig(Config):
    """Everything that defines a study (see ``docs/study.md``)."""

    data: str = option(DEFAULT_DATA, "dataset NAME or NAME:PATH", metavar="SPEC")
    img_size: int | None = option(None, "resize the data to N x N (none: the data's own size)")
    models: list[str] = option(
        help="registered model names (`spatialvit models`)", factory=lambda: list(DEFAULT_MODELS), parse=_names
    )
    model_kwargs: dict[str, dict[str, Any]] = option(help="per model: extra keyword arguments", factory=dict)
    # The embedded default: 7.3 minutes measured on a 2-core CPU with workers 2 (docs/results.md).
    train: TrainConfig = option(
        help="training settings shared by every model (any TrainConfig key but the ones the study sets)",
        factory=lambda: TrainConfig(epochs=12),
    )
    checkpoints: dict[str, str] = option(help="per model: a checkpoint to use instead of training", factory=dict)
    other_data: bool = option(
        False, "score checkpoints trained on other data or at another size than data/img_size (refused without it)"
    )
    sensitivity: SweepConfig = option(
        help="the sensitivity sweep", factory=lambda: SweepConfig(mask_ratios=[0.25, 0.5], repeats=2, batch_size=128)
    )
    probes: ProbeConfig = option(help="the attention probes", factory=ProbeConfig)
    claim_grids: list[Any] | None = option(
        None,
        "block grids at which the sensitivity claims are tested, declared before the run: a fine one at patch level "
        "and a coarse one, each among the sweep's shuffle and mask grids (none: the finest and the coarsest grid "
        "that both sweep)",
        parse=parse_grids,
        metavar="GRIDS",
    )
    seeds: list[int] = option(
        help="every model is trained (and swept) once per seed; columns are reported as mean ± 95 % CI over seeds",
        factory=lambda: [0, 1, 2],
        metavar="S,S,...",
    )
    until_resolved: bool = option(
        False,
        "adaptive: after the seeds (the pilot, at least 3), add seeds one at a time to the models that claims still "
        "open need, cheapest first, with verdicts by the sequential (anytime-valid) rule, until every claim is "
        "conclusive, the next seed would not fit the budget, or max_seeds",
    )
    budget: str | None = option(
        None,
        "with until_resolved: wall-clock budget of the whole study, e.g. 150m, 2h or 5400s (none: no limit)",
        metavar="TIME",
    )
    max_seeds: int = option(10, "with until_resolved: at most this many seeds per model (the pilot's included)")
    workers: int = option(
        2,
        "on a CPU, train up to N (model, seed) runs at once, each in its own process with train.threads threads "
        "(2 x 1 thread suits a 2-core CPU; 1: one run after another, as on a GPU); the numbers do not depend on it",
    )
    executor: str = option(
        "local",
        "where the runs train: local (this machine, see workers) or ray (one task per run on a Ray cluster, "
        "retried from its last checkpoint when its worker dies; needs spatialvit[ray], see docs/cluster.md)",
        metavar="local|ray",
    )
    address: str | None = option(
        None,
        "with executor ray: the cluster to join (auto, HOST:PORT or ray://HOST:PORT; none: $RAY_ADDRESS, else a "
        "cluster `ray start` began on this machine, else a new local one)",
        metavar="ADDR",
    )
    out: str = run.out("study", "output folder")
    resume: bool = option(False, "continue the study in out: reuse finished runs, continue interrupted ones")
    overwrite: bool = run.overwrite("the study")
    progress: bool = run.progress()

    def validate(self) -> None:
        if not self.models:
            raise ValueError("models must name at least one registered model")
        from ..models import list_models  # the registry imports torch: only when a study config is checked

        known = list_models()
        for name in [*self.models, *self.model_kwargs, *self.checkpoints]:
            if name not in known:
                raise unknown_name("model", name, known, "Run `spatialvit models` to list all models.")
        for name in [*self.model_kwargs, *self.checkpoints]:
            if name not in self.models:
                raise ValueError(f"{name!r} has model_kwargs or a checkpoint but is not in models ({self.models})")
        defaults = TrainConfig()
        fixed = [k for k in STUDY_KEYS if getattr(self.train, k) != getattr(defaults, k)]
        if fixed:
            raise ValueError(f"train must not set {', '.join(fixed)}: the study sets them (use the top-level keys)")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct ints, at least one, got {self.seeds}")
        swept = self._swept_grids()
        if self.claim_grids is None and not set(swept["shuffle"]) & set(swept["mask"]):
            raise ValueError("claim_grids: no grid is swept by both shuffles and masks; list the claim grids")
        for grid in map(to_grid, self.claim_grids or []):
            missing = [kind for kind, grids in swept.items() if grid not in grids]
            if missing:
                raise ValueError(
                    f"claim_grids: {grid[0]}x{grid[1]} is not among the sweep's {' and '.join(missing)} grids "
                    f"({', '.join(f'{k}: {v}' for k, v in swept.items())}); add it to sensitivity or drop it"
                )
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        self._validate_adaptive()
        self._validate_executor()
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: continue the study or start it again")

    def _validate_adaptive(self) -> None:
        if self.budget is not None:
            self.budget_s  # noqa: B018 - parses it (raises on a malformed budget)
        if not self.until_resolved:
            if self.budget is not None:
                raise ValueError(f"budget ({self.budget!r}) limits an adaptive study: it needs until_resolved")
            return
        if len(self.seeds) < 3:
            raise ValueError(f"until_resolved needs a pilot of at least 3 seeds, got seeds {self.seeds}")
        if self.max_seeds < len(self.seeds):
            raise ValueError(f"max_seeds ({self.max_seeds}) must be at least the pilot's {len(self.seeds)} seeds")
        if self.checkpoints:
            raise ValueError("until_resolved trains every model's seeds: it cannot use checkpoints")

    @property
    def budget_s(self) -> float | None:
        """``budget`` in seconds (``None``: no limit)."""
        if self.budget is None:
            return None
        text = str(self.budget).strip().lower()
        unit = {"s": 1, "m": 60, "h": 3600}.get(text[-1:])
        number = text[:-1] if unit else text
        try:
            value = float(number) * (unit or 60)
        except ValueError:
            value = math.nan
        if not value > 0:
            raise ValueError(f"budget must be a positive time such as 150m, 2h or 5400s (plain: minutes), got "
                             f"{self.budget!r}")  # fmt: skip
        return value

    @property
    def seed_sequence(self) -> list[int]:
        """The seeds an adaptive study may use, in order: the pilot's, then the next integers above them, up to
        ``max_seeds`` in all (the pilot's alone without ``until_resolved``)."""
        if not self.until_resolved:
            return list(self.seeds)
        top = max(self.seeds)
        return [*self.seeds, *range(top + 1, top + 1 + self.max_seeds - len(self.seeds))]

    def _swept_grids(self) -> dict[str, list[tuple[int, int]]]:
        sweep = self.sensitivity
        return {kind: list(map(to_grid, grids)) for kind, grids in
                (("shuffle", sweep.shuffle_grids), ("mask", sweep.mask_grids or sweep.shuffle_grids))}  # fmt: skip

    @property
    def claim_grid_labels(self) -> list[str]:
        """The claim grids as the sweep names them (``["8x8", "2x2"]``); by default the finest and the coarsest grid
        swept by both shuffles and masks."""
        if self.claim_grids is not None:
            grids = list(map(to_grid, self.claim_grids))
        else:
            swept = self._swept_grids()
            both = sorted(set(swept["shuffle"]) & set(swept["mask"]), key=lambda g: g[0] * g[1])
            grids = list(dict.fromkeys([both[-1], both[0]]))
        return [f"{r}x{c}" for r, c in grids]

    def _validate_executor(self) -> None:
        if self.executor not in ("local", "ray"):
            raise ValueError(f"executor must be local or ray, got {self.executor!r}")
        if self.address is not None and self.executor != "ray":
            raise ValueError(f"address ({self.address!r}) joins a Ray cluster: it needs executor ray")
        if self.executor == "ray":
            if self.train.device not in (AUTO, *DEVICES):
                raise ValueError(
                    f"with executor ray, train.device must be auto, cpu or cuda (Ray gives each run its GPU), "
                    f"got {self.train.device!r}"
                )
            if importlib.util.find_spec("ray") is None:
                raise ValueError("executor ray needs Ray: pip install 'spatialvit[ray]' (see docs/cluster.md)")

    def train_changes(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Changes to ``train`` with their derived defaults: new ``epochs`` without ``warmup_epochs`` keep the
        warm-up within half the run (``min(train.warmup_epochs, epochs / 2)``), so that the schedule still decays."""
        if "epochs" in changes and "warmup_epochs" not in changes:
            return {**changes, "warmup_epochs": min(self.train.warmup_epochs, changes["epochs"] / 2)}
        return changes

    def train_config(self, model: str, seed: int) -> TrainConfig:
        """The TrainConfig of one model and seed: ``train`` plus the study's data and size, the seed, and the run
        folder ``out/runs/<model>/seed<seed>``."""
        return replace(
            self.train,
            model=model,
            data=self.data,
            img_size=self.img_size,
            model_kwargs=self.model_kwargs.get(model, {}),
            seed=seed,
            out=str(Path(self.out) / "runs" / model / f"seed{seed}"),
            resume=AUTO,
            progress=self.progress,
        )

    def ran(self) -> dict[str, Any]:
        """The configuration as it runs, for ``study_config.yaml``: ``train`` without the keys the study sets per
        run (they are the top-level ``data``, ``img_size``, ``model_kwargs``, ``seeds`` and ``out``)."""
        values = self.to_dict()
        values["train"] = {k: v for k, v in values["train"].items() if k not in STUDY_KEYS}
        return values
