"""Training configuration: one dataclass, loadable from YAML, saved with every run and checkpoint.

Precedence: the dataclass defaults, then a YAML file, then explicit overrides (the CLI flags). Every field carries
its help text (:mod:`spatialvit.config`), so ``spatialvit train --help`` and ``docs/training.md`` describe the same
keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import run_options as run
from ..config import DEFAULT_DATA, Config, option


@dataclass(frozen=True)
class TrainConfig(Config):
    """Everything that defines a training run (see ``docs/training.md`` for the meaning of each key)."""

    model: str = option("vit_micro_patch4", "registered model name (`spatialvit models` lists them)")
    data: str = option(DEFAULT_DATA, "dataset spec NAME or NAME:PATH (digits, cifar10:/data/cifar-10-batches-py, ...)")
    img_size: int | None = option(
        None, "resize the data to this size and build the model for it (default: the data's own size)"
    )
    model_kwargs: dict[str, Any] = option(
        help="extra keyword arguments for the model (e.g. drop_path_rate: 0.1)", factory=dict
    )
    epochs: int = option(20, "length of the schedule in epochs")
    batch_size: int = option(32, "images per optimiser step and process")
    lr: float = option(3e-3, "peak AdamW learning rate, reached after the warm-up")
    ref_batch: int | None = option(
        None,
        "linear scaling rule: the peak lr becomes lr x global batch / ref_batch, and the EMA decays by "
        "ema_decay ** (global batch / ref_batch) per step (DeiT/RMT: 512; null: lr and ema_decay as given)",
    )
    min_lr: float = option(1e-5, "learning rate at the end of the cosine decay")
    warmup_epochs: float = option(1.0, "linear warm-up length in epochs (per-step, may be fractional)")
    weight_decay: float = option(0.05, "AdamW weight decay (not applied to norms, biases, embeddings and tokens)")
    label_smoothing: float = option(0.1, "label smoothing of the (soft) targets")
    clip_grad: float | None = option(1.0, "clip the global gradient norm to this value (null: no clipping)")
    crop_padding: int = option(0, "random-crop augmentation: pad by this many pixels, then crop back (0: off)")
    flip: bool = option(False, "random horizontal flips (off by default: digits are not mirror-symmetric)")
    randaugment_ops: int = option(0, "RandAugment operations per image (0: off)")
    randaugment_magnitude: float = option(9.0, "RandAugment magnitude (0-10)")
    mixup_alpha: float = option(0.0, "mixup Beta(alpha, alpha) parameter (0: off)")
    cutmix_alpha: float = option(0.0, "cutmix Beta(alpha, alpha) parameter (0: off)")
    mix_prob: float = option(1.0, "probability that a batch is mixed when mixup/cutmix is on")
    random_erasing: float = option(
        0.0, "probability that an image gets a random box (1/50 to 1/3 of its area) set to noise (DeiT: 0.25; 0: off)"
    )
    repeated_aug: int = option(
        1,
        "repeated augmentation: each sampled image appears this many times per epoch, each copy augmented apart "
        "(on different ranks under DDP); an epoch keeps its length (DeiT/RMT: 3; 1: off)",
    )
    ema_decay: float = option(
        0.0,
        "model EMA: after every step ema = decay x ema + (1 - decay) x weights; evaluated each epoch beside the raw "
        "weights (metrics *_ema) and kept in the checkpoints (DeiT/RMT: 0.99996 with ref_batch 512; 0: off)",
    )
    ema_warmup: bool = option(
        False, "warm the EMA decay up as min(ema_decay, 1 - (1 + step)^(-2/3)) (timm's ModelEmaV3), for short runs"
    )
    seed: int = run.seed("model initialisation, data order, augmentation and dropout")
    device: str = run.device()
    amp: bool = option(True, "bfloat16 autocast on CUDA (ignored on CPU)")
    compile: bool = option(False, "wrap the model in torch.compile")
    threads: int | None = run.threads(1)
    num_workers: int = option(0, "DataLoader worker processes")
    out: str | None = run.out(None, "run folder (default: runs/MODEL-DATA-TIMESTAMP)")
    save_every: int = option(0, "also keep epoch_N.pt every N epochs (0: only last.pt and best.pt)")
    eval_every: int = option(1, "evaluate on the test split every N epochs, and always after the last (0: last only)")
    train_limit: int | None = option(
        None, "train on a random subset of N training images, drawn with subset_seed (none: all images)"
    )
    subset_seed: int | None = option(
        None,
        "seed of the train_limit subset (none: the run's seed, so that seeds vary the data sample as well; runs with "
        "the same seed share it)",
    )
    resume: str | None = option(
        None, "continue a run: 'auto' (or --resume alone) continues OUT/last.pt when it exists, else a checkpoint PATH"
    )
    overwrite: bool = run.overwrite("the run")
    stop_after: int | None = option(
        None, "end this invocation after this epoch, keeping the full schedule (continue with resume)"
    )
    progress: bool = run.progress()

    def validate(self) -> None:
        for name in ("lr", "min_lr"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, got {getattr(self, name)}")
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
            "eval_every": self.eval_every,
        }
        for name, value in non_negative.items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.mix_prob <= 1.0:
            raise ValueError(f"mix_prob must be in [0, 1], got {self.mix_prob}")
        if not 0.0 <= self.random_erasing <= 1.0:
            raise ValueError(f"random_erasing must be a probability in [0, 1], got {self.random_erasing}")
        if self.repeated_aug < 1:
            raise ValueError(f"repeated_aug must be >= 1 (1: off), got {self.repeated_aug}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (0: no EMA), got {self.ema_decay}")
        if self.ref_batch is not None and self.ref_batch < 1:
            raise ValueError(f"ref_batch must be positive or null (no scaling), got {self.ref_batch}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must not exceed epochs ({self.epochs})")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ValueError(f"clip_grad must be positive or null (no clipping), got {self.clip_grad}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or null (torch's choice), got {self.threads}")
        if self.img_size is not None and self.img_size <= 0:
            raise ValueError(f"img_size must be positive, got {self.img_size}")
        if self.train_limit is not None and self.train_limit < 1:
            raise ValueError(f"train_limit must be a positive number of images (none: all), got {self.train_limit}")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.epochs:
            raise ValueError(f"stop_after must be between 1 and epochs ({self.epochs}), got {self.stop_after}")
        if self.overwrite and self.resume is not None:
            raise ValueError("overwrite and resume exclude each other: continue the run or start it again, not both")
        run.check(self)


SPLITS = ("test", "train")


@dataclass(frozen=True)
class EvalConfig(Config):
    """``spatialvit eval``: score a checkpoint on a split of a dataset (see ``docs/training.md``)."""

    checkpoint: str | None = option(None, "checkpoint file (e.g. runs/x/best.pt)", metavar="PATH")
    data: str | None = option(
        None, "dataset spec NAME or NAME:PATH (none: the data the model was trained on)", metavar="SPEC"
    )
    other_data: bool = option(False, "score the checkpoint on data other than the one it was trained on")
    split: str = option("test", "which split: test or train", metavar="test|train")
    ema: bool = option(False, "evaluate the model EMA the checkpoint keeps (runs trained with ema_decay)")
    batch_size: int = option(256, "images per batch")
    device: str = run.device()
    out: str | None = run.out(None, "folder for eval.* / eval_ema.* (none: the checkpoint's folder)")
    overwrite: bool = run.overwrite("eval.* / eval_ema.*")
    progress: bool = run.progress()

    def validate(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        run.check(self)
