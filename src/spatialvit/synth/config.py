"""The settings of the synthetic experiments, without torch (the command line reads them to build its flags):
:class:`FitSettings` (how the simplified model is trained), the transfer arms and the activation names, and one
config per ``spatialvit synth`` action (:class:`SynthTrainConfig`, :class:`SynthTransferConfig`,
:class:`AssociateConfig`) with the presets they start from.

:mod:`.experiments` re-exports them; ``ACTIVATIONS`` of :mod:`.model` has one function per name here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

from .. import run_options as run
from .._names import unknown_name
from ..config import Config, option
from ..probes.config import CLUSTER_METHODS

S = TypeVar("S", bound="SynthSetup")

TRANSFER_ARMS = ("frozen", "reinit", "content")
ACTIVATION_NAMES = ("gelu", "poly3", "poly5")
# model_name of the checkpoints of `spatialvit synth train` (model.pt)
SIMPLIFIED = "synth_simplified"


@dataclass(frozen=True)
class FitSettings(Config):
    """Plain (S)GD on the logistic loss: ``batch_size=None`` is full-batch gradient descent; ``attn_lr`` (default
    ``lr``) is the step size of the attention parameters, whose gradients through the softmax are much smaller;
    ``max_step`` caps the norm of each parameter group's update ``lr * grad`` (clipped GD: with the z^5 activation
    the gradient of Q grows by orders of magnitude once attention starts to concentrate)."""

    steps: int = option(300, "gradient steps")
    lr: float = option(0.1, "step size of the value vectors")
    attn_lr: float | None = option(None, "step size of Q (none: lr; see docs/synthetic.md)")
    batch_size: int | None = option(None, "minibatch SGD with this batch (none: full-batch gradient descent)")
    max_step: float | None = option(None, "cap on the norm of each update (none: no cap)")
    reset_diagonal: bool = option(True, "keep Q's diagonal at zero")
    train_attention: bool = option(True, "train Q (off: attention stays at its initialisation)")
    eval_every: int = option(10, "evaluate every N steps")

    def validate(self) -> None:
        for name in ("steps", "eval_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "attn_lr", "max_step"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0 and finite, got {value}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (or none for full batch), got {self.batch_size}")


def check_cluster(method: str) -> None:
    """Raise a ``ValueError`` naming ``cluster`` unless it is one of the clustering methods."""
    if method not in CLUSTER_METHODS:
        raise ValueError(f"cluster must be one of {', '.join(CLUSTER_METHODS)}, got {method!r}")


# The presets: values on top of the defaults of a synth config (which are the 'image' preset). A preset's data
# options come first in the data spec; the data key's options override them one by one.
PRESETS: dict[str, dict[str, Any]] = {
    "image": {},
    "small": {"n_train": 50_000, "value_init_std": 0.01, "fit": {"steps": 300, "attn_lr": 100.0, "max_step": None}},
}
PRESET_DATA = {"image": "", "small": "grid=1x10,d=100,group=1x2,partition=random"}
PRESET_HELP = (
    "'image': the 8x8 grid of 2x2 groups, d=48 (renders as 32x32 RGB), 10k samples, 600 steps; 'small': the "
    "re-implementation's 10 patches, d=100, random pairs, 50k samples, 300 steps at attn_lr 100"
)
DATA_KEYS = (
    "grid=8 (or HxW), d=48, group=2 (or 2x2), partition=local|random, q=(default log(d)/D), sigma=(default "
    "1/sqrt(d)), num_classes=2, task_seed=0, patch_pixels=4, in_chans=3"
)
CLUSTER_HELP = "clustering for the ARI"


@dataclass(frozen=True)
class SynthSetup(Config):
    """The task and the simplified model of ``spatialvit synth train`` and ``transfer`` (and their run options).
    The defaults are the 'image' preset; :meth:`for_preset` starts from another."""

    preset: str = option("image", PRESET_HELP, metavar="|".join(PRESETS))
    data: str = option("", f"data options key=value,... on top of the preset's: {DATA_KEYS}", metavar="OPTIONS")
    n_train: int = option(10_000, "training samples (preset small: 50000)")
    n_test: int = option(2_000, "test samples")
    fit: FitSettings = option(
        help="how the model is trained", factory=lambda: FitSettings(steps=600, attn_lr=1000.0, max_step=0.3)
    )
    activation: str = option("poly5", "act of F(X) (poly5: z^5 + 0.03 z)", metavar="|".join(ACTIVATION_NAMES))
    values: int = option(1, "value vectors per output")
    value_init_std: float = option(0.05, "init std of the values (preset small: 0.01)")
    seed: int = run.seed("initialisation and samples")
    out: str = run.out("runs/synth", "output folder")
    overwrite: bool = run.overwrite("the files")
    progress: bool = run.progress()

    @classmethod
    def for_preset(cls: type[S], name: str) -> S:
        """The defaults of ``cls`` under the preset ``name``."""
        if name not in PRESETS:
            raise unknown_name("preset", name, PRESETS, f"Presets: {', '.join(PRESETS)}.")
        return cls.from_dict({"preset": name, **PRESETS[name]})

    @classmethod
    def from_sources(cls: type[S], flags: dict[str, Any], config_file: str | None = None) -> S:
        """Defaults <- the preset (named by ``flags``, else by the file) <- the YAML ``config_file`` <- ``flags``."""
        preset = flags.get("preset") or (cls.from_yaml(config_file).preset if config_file else "image")
        base = cls.for_preset(preset)
        if config_file:
            base = cls.from_yaml(config_file, base)
        return cls.from_dict(flags, base)

    def validate(self) -> None:
        if self.preset not in PRESETS:
            raise unknown_name("preset", self.preset, PRESETS, f"Presets: {', '.join(PRESETS)}.")
        if self.activation not in ACTIVATION_NAMES:
            raise ValueError(f"activation must be one of {', '.join(ACTIVATION_NAMES)}, got {self.activation!r}")
        for name in ("n_train", "n_test", "values"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.value_init_std) and self.value_init_std > 0):
            raise ValueError(f"value_init_std must be > 0 and finite, got {self.value_init_std}")

    def data_spec(self) -> str:
        """The synthetic data options: the preset's, then those of ``data``."""
        return ",".join(filter(None, [PRESET_DATA[self.preset], self.data]))

    def model_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the simplified model."""
        return {"activation": self.activation, "num_values": self.values, "value_init_std": self.value_init_std}


@dataclass(frozen=True)
class SynthTrainConfig(SynthSetup):
    """``spatialvit synth train``: fit the simplified model and track its patch association."""

    cluster: str = option("spectral", CLUSTER_HELP, metavar="|".join(CLUSTER_METHODS))

    def validate(self) -> None:
        super().validate()
        check_cluster(self.cluster)


@dataclass(frozen=True)
class SynthTransferConfig(SynthSetup):
    """``spatialvit synth transfer``: pre-train on one feature, learn an orthogonal one on the same groups."""

    ns: list[int] = option(help="task-2 sample counts", factory=lambda: [8, 16, 32, 64, 128, 256])
    arms: list[str] = option(help="arms among frozen, reinit, content", factory=lambda: list(TRANSFER_ARMS))
    num_seeds: int = option(3, "repetitions per (arm, n): seeds SEED, SEED+1, ...")
    finetune_steps: int = option(300, "GD steps on task 2")

    def validate(self) -> None:
        super().validate()
        unknown = [a for a in self.arms if a not in TRANSFER_ARMS]
        if unknown or not self.arms:
            raise ValueError(f"arms must be among {', '.join(TRANSFER_ARMS)}, got {self.arms}")
        if not self.ns or min(self.ns) < 1:
            raise ValueError(f"ns must be sample counts >= 1, got {self.ns}")
        for name in ("num_seeds", "finetune_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class AssociateConfig(Config):
    """``spatialvit synth associate``: patch association of a saved simplified model or ViT checkpoint."""

    model: str = option("", "model.pt of 'synth train', or a spatialvit ViT checkpoint", metavar="MODEL_PT")
    data: str | None = option(
        None, f"the synthetic data options a ViT checkpoint was trained with (ViT only): {DATA_KEYS}", metavar="OPTIONS"
    )
    images: int = option(256, "images averaged for a ViT's attention")
    per_head: bool = option(False, "also one row per attention head (ViT)")
    cluster: str = option("spectral", CLUSTER_HELP, metavar="|".join(CLUSTER_METHODS))
    out: str = run.out("runs/synth/associate", "output folder")
    overwrite: bool = run.overwrite("the files")

    def validate(self) -> None:
        if self.images < 1:
            raise ValueError(f"images must be >= 1, got {self.images}")
        check_cluster(self.cluster)
