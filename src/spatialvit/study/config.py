"""The study configuration: a dataset, a list of models, one TrainConfig-shaped ``train`` mapping shared by all
models, the sensitivity sweep and probe settings, a seed and an output folder. YAML via :meth:`from_yaml`."""

from __future__ import annotations

import os
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .._names import unknown_name
from ..models import list_models
from ..train.config import TrainConfig

DEFAULT_MODELS = (
    "resnet_small",
    "vit_micro_patch4",
    "vit_convqkv_micro_patch4",
    "vit_posattn_micro_patch4",
    "vit_rmt_micro_patch4",
    "vit_sdt_micro_patch4",
)
# The embedded default: measured to finish in under 10 minutes on a 2-core CPU (docs/results.md).
DEFAULT_TRAIN = {"epochs": 12, "batch_size": 32, "lr": 3e-3, "warmup_epochs": 1.0, "threads": 1, "device": "auto"}
# Keys of ``train`` that the study sets itself, per model.
STUDY_KEYS = ("model", "data", "img_size", "seed", "out", "resume", "stop_after", "progress")


@dataclass(frozen=True)
class SensitivitySettings:
    """The sweep run on every model (see ``spatialvit.probes.sensitivity_sweep``)."""

    shuffle_grids: list[int] = field(default_factory=lambda: [2, 4, 8])
    mask_grids: list[int] | None = None
    mask_ratios: list[float] = field(default_factory=lambda: [0.25, 0.5])
    mask_fill: str = "zero"
    repeats: int = 2
    max_images: int | None = None
    batch_size: int = 128


@dataclass(frozen=True)
class ProbeSettings:
    """Attention probes of the ViTs: images for attention distances, and the example maps' query patch."""

    images: int = 64
    example_images: int = 2
    query: list[int] | None = None  # (row, col) of the query token on the grid; default: the centre


@dataclass(frozen=True)
class StudyConfig:
    """Everything that defines a study (see ``docs/study.md``)."""

    data: str = "digits"
    img_size: int | None = None
    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    model_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_TRAIN))
    checkpoints: dict[str, str] = field(default_factory=dict)
    sensitivity: SensitivitySettings = field(default_factory=SensitivitySettings)
    probes: ProbeSettings = field(default_factory=ProbeSettings)
    seed: int = 0
    out: str = "study"
    resume: bool = False  # reuse the finished (and continue the interrupted) runs of an earlier study in ``out``
    overwrite: bool = False  # start again in an ``out`` that holds a study, deleting its files first
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError("models must name at least one registered model")
        known = list_models()
        for name in [*self.models, *self.model_kwargs, *self.checkpoints]:
            if name not in known:
                raise unknown_name("model", name, known, "Run `spatialvit models` to list all models.")
        for name in [*self.model_kwargs, *self.checkpoints]:
            if name not in self.models:
                raise ValueError(f"{name!r} has model_kwargs or a checkpoint but is not in models ({self.models})")
        fixed = [k for k in self.train if k in STUDY_KEYS]
        if fixed:
            raise ValueError(f"train must not set {', '.join(fixed)}: the study sets them (use the top-level keys)")
        self.train_config(self.models[0])  # validates the train mapping
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other: continue the study or start it again")
        if self.sensitivity.repeats < 1 or self.probes.images < 1 or self.probes.example_images < 1:
            raise ValueError("sensitivity.repeats, probes.images and probes.example_images must be >= 1")

    def train_config(self, model: str) -> TrainConfig:
        """The TrainConfig of one model: ``train`` plus the study's data, size, seed and run folder."""
        return TrainConfig.from_dict(
            {
                **self.train,
                "model": model,
                "data": self.data,
                "img_size": self.img_size,
                "model_kwargs": self.model_kwargs.get(model, {}),
                "seed": self.seed,
                "out": str(Path(self.out) / "runs" / model),
                "resume": "auto",
                "progress": self.progress,
            }
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: StudyConfig | None = None) -> StudyConfig:
        """A config from ``values`` on top of ``base`` (default: the defaults); unknown keys raise ``KeyError``."""
        if not isinstance(values, dict):
            raise ValueError(f"a study config must be a mapping, got {type(values).__name__}")
        base = base or cls()
        changes = {}
        for key, value in values.items():
            valid = [f.name for f in fields(cls)]
            if key not in valid:
                raise unknown_name("study config key", str(key), valid, f"Valid keys: {', '.join(valid)}.")
            if key in ("sensitivity", "probes"):
                value = _sub(getattr(base, key), value, key)
            changes[key] = value
        return replace(base, **changes)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, base: StudyConfig | None = None) -> StudyConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"study config {str(path)!r} does not exist")
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"study config {str(path)!r} is not valid YAML: {err}") from err
        try:
            return cls.from_dict(values, base)
        except (KeyError, ValueError) as err:
            raise type(err)(f"in {str(path)!r}: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sub(base: Any, values: Any, key: str) -> Any:
    """Update the nested settings dataclass ``base`` with a mapping, checking key names and numeric types."""
    if not isinstance(values, dict):
        raise ValueError(f"{key} must be a mapping, got {type(values).__name__}")
    valid = [f.name for f in fields(base)]
    hints = typing.get_type_hints(type(base))
    for name, value in values.items():
        if name not in valid:
            raise unknown_name(f"{key} key", str(name), valid, f"Valid keys: {', '.join(valid)}.")
        if hints[name] is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"{key}.{name} must be an int, got {value!r}")
    return replace(base, **values)
