"""Training configuration: one dataclass, loadable from YAML, saved with every run and checkpoint.

Precedence: the dataclass defaults, then a YAML file, then explicit overrides (the CLI flags). Every field carries
its help text, so ``spatialvit train --help`` and ``docs/training.md`` describe the same keys.
"""

from __future__ import annotations

import os
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from .._names import unknown_name


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (see ``docs/training.md`` for the meaning of each key)."""

    model: str = _opt("vit_micro_patch4", "registered model name (`spatialvit models` lists them)")
    data: str = _opt("digits", "dataset spec NAME or NAME:PATH (digits, cifar10:/data/cifar-10-batches-py, ...)")
    img_size: int | None = _opt(
        None, "resize the data to this size and build the model for it (default: the data's own size)"
    )
    model_kwargs: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "extra keyword arguments for the model (e.g. drop_path_rate: 0.1)"}
    )
    epochs: int = _opt(20, "length of the schedule in epochs")
    batch_size: int = _opt(32, "images per optimiser step and process")
    lr: float = _opt(3e-3, "peak AdamW learning rate, reached after the warm-up")
    min_lr: float = _opt(1e-5, "learning rate at the end of the cosine decay")
    warmup_epochs: float = _opt(1.0, "linear warm-up length in epochs (per-step, may be fractional)")
    weight_decay: float = _opt(0.05, "AdamW weight decay (not applied to norms, biases, embeddings and tokens)")
    label_smoothing: float = _opt(0.1, "label smoothing of the (soft) targets")
    clip_grad: float | None = _opt(1.0, "clip the global gradient norm to this value (null: no clipping)")
    crop_padding: int = _opt(0, "random-crop augmentation: pad by this many pixels, then crop back (0: off)")
    flip: bool = _opt(False, "random horizontal flips (off by default: digits are not mirror-symmetric)")
    randaugment_ops: int = _opt(0, "RandAugment operations per image (0: off)")
    randaugment_magnitude: float = _opt(9.0, "RandAugment magnitude (0-10)")
    mixup_alpha: float = _opt(0.0, "mixup Beta(alpha, alpha) parameter (0: off)")
    cutmix_alpha: float = _opt(0.0, "cutmix Beta(alpha, alpha) parameter (0: off)")
    mix_prob: float = _opt(1.0, "probability that a batch is mixed when mixup/cutmix is on")
    seed: int = _opt(0, "seed of model initialisation, data order, augmentation and dropout")
    device: str = _opt("auto", "auto (cuda if available), cpu, cuda or cuda:N")
    amp: bool = _opt(True, "bfloat16 autocast on CUDA (ignored on CPU)")
    compile: bool = _opt(False, "wrap the model in torch.compile")
    threads: int | None = _opt(
        1, "CPU threads of torch (null: torch's choice; 1 is fastest for small models on a shared CPU)"
    )
    num_workers: int = _opt(0, "DataLoader worker processes")
    out: str | None = _opt(None, "run folder (default: runs/MODEL-DATA-TIMESTAMP)")
    save_every: int = _opt(0, "also keep epoch_N.pt every N epochs (0: only last.pt and best.pt)")
    resume: str | None = _opt(
        None, "continue a run: 'auto' (or --resume alone) continues OUT/last.pt when it exists, else a checkpoint PATH"
    )
    overwrite: bool = _opt(False, "start again in an OUT that holds an earlier run, deleting that run's files first")
    stop_after: int | None = _opt(
        None, "end this invocation after this epoch, keeping the full schedule (continue with resume)"
    )
    progress: bool = _opt(True, "show progress bars")

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), hints[f.name])
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        non_negative = {
            "min_lr": self.min_lr,
            "warmup_epochs": self.warmup_epochs,
            "weight_decay": self.weight_decay,
            "crop_padding": self.crop_padding,
            "randaugment_ops": self.randaugment_ops,
            "mixup_alpha": self.mixup_alpha,
            "cutmix_alpha": self.cutmix_alpha,
            "num_workers": self.num_workers,
            "save_every": self.save_every,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.mix_prob <= 1.0:
            raise ValueError(f"mix_prob must be in [0, 1], got {self.mix_prob}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must not exceed epochs ({self.epochs})")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ValueError(f"clip_grad must be positive or null (no clipping), got {self.clip_grad}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null (torch's choice), got {self.threads}")
        if self.img_size is not None and self.img_size <= 0:
            raise ValueError(f"img_size must be positive, got {self.img_size}")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.epochs:
            raise ValueError(f"stop_after must be between 1 and epochs ({self.epochs}), got {self.stop_after}")
        if self.overwrite and self.resume is not None:
            raise ValueError("overwrite and resume exclude each other: continue the run or start it again, not both")
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], base: TrainConfig | None = None) -> TrainConfig:
        """A config from ``values`` on top of ``base`` (default: the defaults); unknown keys raise ``KeyError``."""
        if not isinstance(values, dict):
            raise ValueError(f"a training config must be a mapping of keys to values, got {type(values).__name__}")
        valid = [f.name for f in fields(cls)]
        for key in values:
            if key not in valid:
                raise unknown_name("config key", str(key), valid, f"Valid keys: {', '.join(valid)}.")
        hints = typing.get_type_hints(cls)
        return replace(base or cls(), **{k: _yaml_float(v, hints[k]) for k, v in values.items()})

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, base: TrainConfig | None = None) -> TrainConfig:
        """Read a YAML mapping of config keys (an empty file gives ``base``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {str(path)!r} does not exist")
        try:
            values = yaml.safe_load(path.read_text())
        except yaml.YAMLError as err:
            raise ValueError(f"config file {str(path)!r} is not valid YAML: {err}") from err
        try:
            return cls.from_dict(values or {}, base)
        except (KeyError, ValueError) as err:
            raise type(err)(f"in {str(path)!r}: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_yaml(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        return path


def config_help() -> dict[str, tuple[Any, str]]:
    """``{key: (default, help)}`` for every config key, in declaration order."""
    return {
        f.name: (f.default if f.default is not MISSING else f.default_factory(), f.metadata["help"])
        for f in fields(TrainConfig)
    }


def _yaml_float(value: Any, hint: Any) -> Any:
    """YAML 1.1 reads ``1e-3`` (no dot) as a string: turn such strings into floats for float keys."""
    if isinstance(value, str) and float in (hint, *typing.get_args(hint)):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_type(name: str, value: Any, hint: Any) -> None:
    """Raise ``ValueError`` unless ``value`` fits the annotation ``hint`` (int passes for float, not bool)."""
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    for option in options:
        base = typing.get_origin(option) or option
        if option is type(None) and value is None:
            return
        if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return
        if base is int and isinstance(value, int) and not isinstance(value, bool):
            return
        if base in (str, bool, dict) and isinstance(value, base):
            return
    expected = " or ".join("null" if o is type(None) else (typing.get_origin(o) or o).__name__ for o in options)
    raise ValueError(f"config key {name!r} must be {expected}, got {value!r} ({type(value).__name__})")
