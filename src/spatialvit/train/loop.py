"""The training engine: ``fit(config)`` trains a registered model on a registered dataset; ``evaluate`` scores one.

One run writes into its folder ``config.yaml``, ``metrics.csv`` (also ``.json``/``.md``), ``last.pt`` every epoch,
``best.pt`` at the best test top-1 (of the raw weights), and TensorBoard events when ``torch.utils.tensorboard``
imports. With ``ema_decay`` the run also keeps a model EMA (:mod:`.ema`), evaluated every epoch beside the raw weights
and saved in every checkpoint.

Reproducibility: the model is initialised from ``seed``; every epoch's data order, augmentation and dropout draw
from generators seeded by ``(seed, epoch, rank)``. A run resumed from the checkpoint of epoch k therefore replays
exactly the streams of the uninterrupted run, and on CPU ends with bit-identical weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from .._text import plural
from ..config import AUTO
from ..data import DatasetInfo, load_dataset, random_subset
from ..data.transforms import build_train_transform
from ..models import create_model, model_defaults
from ..models.registry import sizes_that_build
from ..report.tables import save_table
from ..runtime import claim_outputs, describe_changes, eta, progress_bar, resolve_device, with_normalize
from .checkpoint import check_data, load_checkpoint, model_from_checkpoint, save_checkpoint, trained_on
from .config import EvalConfig, TrainConfig
from .distributed import DistContext, init_distributed, shard_indices
from .ema import ModelEma
from .sampler import RepeatAugSampler

log = logging.getLogger(__name__)

# Keys that may change when a run is resumed: they do not alter the trajectory of the weights.
RUNTIME_KEYS = frozenset(
    {
        "out",
        "resume",
        "overwrite",
        "stop_after",
        "progress",
        "num_workers",
        "save_every",
        "device",
        "amp",
        "compile",
        "threads",
    }
)
# What a run writes into its folder (``summary.*`` comes from the CLI) and what `spatialvit eval` writes beside it by
# default (``eval.*``, ``eval_ema.*``, ``eval_*/`` folders): the files an earlier run leaves behind.
RUN_FILES = (
    "config.yaml", "metrics.*", "summary.*", "last.pt", "best.pt", "epoch_*.pt", "events.out.tfevents.*",
    "eval.*", "eval_ema.*", "eval_*/",
)  # fmt: skip
# Names (or name endings) of parameters that get no weight decay, besides every 0-d/1-d tensor.
NO_DECAY_NAMES = ("pos_embed", "cls_token", "token")
# The test metrics of an epoch; with a model EMA each also as NAME_ema, for the averaged weights.
TEST_KEYS = ("test_loss", "test_top1", "test_top5")


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the run stopped without overwriting its last good checkpoint."""


@dataclass
class FitResult:
    """What ``fit`` leaves behind: the trained model, its run folder, the per-epoch history, final/best metrics, and
    the model EMA (``None`` without ``ema_decay``)."""

    model: nn.Module
    run_dir: Path
    history: list[dict[str, Any]]
    last_checkpoint: Path
    best_checkpoint: Path
    ema_model: nn.Module | None = None

    @property
    def final(self) -> dict[str, Any]:
        return self.history[-1]

    @property
    def best(self) -> dict[str, Any]:
        return max((row for row in self.history if row["test_top1"] is not None), key=lambda row: row["test_top1"])

    def summary(self) -> list[dict[str, Any]]:
        """Two rows, the final and the best epoch (by raw test top-1): test top-1, top-5 and loss, and the same for
        the EMA weights when the run keeps an EMA (the run's ``summary.*``)."""
        keys = ("test_top1", "test_top5", "test_loss")
        if "test_top1_ema" in self.final:
            keys += ("test_top1_ema", "test_top5_ema", "test_loss_ema")
        final, best = self.final, self.best
        return [
            {"": f"final (epoch {final['epoch']})", **{k: final[k] for k in keys}},
            {"": f"best (epoch {best['epoch']})", **{k: best[k] for k in keys}},
        ]


@dataclass
class _Session:
    """Everything one ``fit`` call works with, built by :func:`_setup`."""

    config: TrainConfig
    ctx: DistContext
    device: torch.device
    run_dir: Path
    info: DatasetInfo
    model: nn.Module
    model_kwargs: dict[str, Any]
    forward: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    augment: Callable
    train_loader: DataLoader
    test_loader: DataLoader
    loader_gen: torch.Generator
    ema: ModelEma | None = None
    ema_forward: nn.Module | None = None  # the EMA behind the input normalisation, for evaluation
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def amp(self) -> bool:
        return self.config.amp and self.device.type == "cuda"


def fit(config: TrainConfig) -> FitResult:
    """Train ``config.model`` on ``config.data``; resumes when ``config.resume`` is set. Returns a :class:`FitResult`.

    Raises ``ValueError``/``KeyError`` for bad configs, ``FileNotFoundError`` for missing data or checkpoints and
    :class:`NonFiniteLossError` when the loss diverges.
    """
    run, resume_from = _setup(config)
    if run.ctx.is_main and run.config.warmup_epochs >= run.config.epochs:
        log.warning(schedule_warning(run.config))
    if resume_from is not None:
        _resume(run, resume_from)
    writer = _prepare_run_dir(run)
    last, best = run.run_dir / "last.pt", run.run_dir / "best.pt"
    best_top1 = max((row["test_top1"] for row in run.history if row["test_top1"] is not None), default=-1.0)
    first, end, start = len(run.history), run.config.stop_after or run.config.epochs, time.perf_counter()
    for epoch in range(first, end):
        row = _epoch(run, epoch, last)
        run.history.append(row)
        if run.ctx.is_main:
            log.info(_epoch_line(row, run.config.epochs) + "  " + eta(time.perf_counter() - start, epoch + 1 - first,
                                                                     end - first))  # fmt: skip
            best_top1 = _save_epoch(run, row, best_top1, writer)
        run.ctx.barrier()
    result = FitResult(
        model=run.model,
        run_dir=run.run_dir,
        history=run.history,
        last_checkpoint=last,
        best_checkpoint=best,
        ema_model=run.ema.module if run.ema else None,
    )
    if run.ctx.is_main:
        if writer is not None:
            writer.close()
        save_table(result.summary(), run.run_dir, "summary", digits=4)
    return result


def _setup(config: TrainConfig) -> tuple[_Session, Path | None]:
    """Device and process group, run folder, data, model, optimiser, schedule, augmentation and loaders; and the
    checkpoint to resume from (``None``: a new run)."""
    device = resolve_device(config.device)
    if config.threads:
        torch.set_num_threads(config.threads)
    ctx = init_distributed(device)
    if device.type == "cuda" and ctx.world_size > 1:
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    run_dir = Path(config.out or f"runs/{config.model}-{config.data.split(':')[0]}-{_timestamp(ctx)}")
    config = replace(config, out=str(run_dir))
    resume_from = _resume_path(config, run_dir)

    train_set = load_dataset(config.data, "train", config.img_size)
    if config.train_limit is not None:
        subset_seed = config.seed if config.subset_seed is None else config.subset_seed
        train_set = random_subset(train_set, config.train_limit, seed=subset_seed)
    test_set = load_dataset(config.data, "test", config.img_size)
    info: DatasetInfo = train_set.info
    torch.manual_seed(config.seed)
    model, model_kwargs = build_model(config, info)
    net: nn.Module = with_normalize(model, info.mean, info.std).to(device)
    if ctx.distributed:
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    forward = torch.compile(net) if config.compile else net

    steps_per_epoch = math.ceil(_shard_len(len(train_set), ctx) / config.batch_size)
    scale = batch_scale(config, ctx.world_size)
    peak_lr = config.lr * scale
    optimizer = torch.optim.AdamW(param_groups(model, config.weight_decay), lr=peak_lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule(config, steps_per_epoch, peak_lr))
    ema = ModelEma(model, config.ema_decay**scale, config.ema_warmup) if config.ema_decay > 0 else None
    augment = build_train_transform(config, info.num_classes)
    loader_gen = torch.Generator()
    train_loader, test_loader = _loaders(train_set, test_set, config, ctx=ctx, device=device, gen=loader_gen)
    run = _Session(
        config=config,
        ctx=ctx,
        device=device,
        run_dir=run_dir,
        info=info,
        model=model,
        model_kwargs=model_kwargs,
        forward=forward,
        optimizer=optimizer,
        scheduler=scheduler,
        augment=augment,
        train_loader=train_loader,
        test_loader=test_loader,
        loader_gen=loader_gen,
    )
    if ema is not None:
        run.ema, run.ema_forward = ema, with_normalize(ema.module, info.mean, info.std).to(device)
    return run, resume_from


def _resume(run: _Session, path: Path) -> None:
    """Load the weights, optimiser, schedule and history of the checkpoint at ``path`` into ``run``."""
    ckpt = load_checkpoint(path, map_location=run.device)
    _check_resumable(ckpt, run.config, path)
    run.model.load_state_dict(ckpt["model"])
    run.optimizer.load_state_dict(ckpt["optimizer"])
    run.scheduler.load_state_dict(ckpt["scheduler"])
    if run.ema is not None:
        if "ema" not in ckpt:
            raise ValueError(f"checkpoint {str(path)!r} holds no model EMA to continue")
        run.ema.load_state_dict(ckpt["ema"])
    run.history = list(ckpt["metrics"])
    if run.ctx.is_main:
        log.info("resumed %s at epoch %d/%d", path, int(ckpt["epoch"]), run.config.epochs)


def _prepare_run_dir(run: _Session) -> Any:
    """On the main process: clear an earlier run for ``overwrite``, write ``config.yaml``; returns the TensorBoard
    writer (``None`` without tensorboard, and on other ranks)."""
    if not run.ctx.is_main:
        return None
    if run.config.overwrite:  # a one-off action, not a property of the run: not recorded
        claim_outputs(run.run_dir, RUN_FILES, overwrite=True)
        run.config = replace(run.config, overwrite=False)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    run.config.to_yaml(run.run_dir / "config.yaml")
    return _tensorboard(run.run_dir)


def _epoch(run: _Session, epoch: int, last: Path) -> dict[str, Any]:
    """Train one epoch (streams seeded by ``(seed, epoch, rank)``) and evaluate; returns the epoch's metrics row."""
    config, ctx = run.config, run.ctx
    run.loader_gen.manual_seed(epoch_seed(config.seed, epoch, ctx.rank, stream=0))
    aug_gen = torch.Generator().manual_seed(epoch_seed(config.seed, epoch, ctx.rank, stream=1))
    torch.manual_seed(epoch_seed(config.seed, epoch, ctx.rank, stream=2))
    if isinstance(run.train_loader.sampler, (DistributedSampler, RepeatAugSampler)):
        run.train_loader.sampler.set_epoch(epoch)
    t0 = time.perf_counter()
    bar = progress_bar(
        run.train_loader,
        desc=f"epoch {epoch + 1}/{config.epochs}",
        leave=False,
        enabled=config.progress and ctx.is_main,
    )
    try:
        train = _train_epoch(run, bar, aug_gen, epoch)
    except NonFiniteLossError as err:
        kept = (
            f"the last good checkpoint {str(last)!r} (epoch {epoch}) is kept" if epoch else "no checkpoint was written"
        )
        raise NonFiniteLossError(f"{err}; stopped without saving, {kept}. Try a lower lr or clip_grad") from None
    train_time = time.perf_counter() - t0
    row = {"epoch": epoch + 1, "lr": run.optimizer.param_groups[0]["lr"], "train_loss": train["loss"]}
    row |= {"train_acc": train["acc"]}
    every, last_epoch = config.eval_every, epoch + 1 == config.epochs
    if last_epoch or (every and (epoch + 1) % every == 0):
        test = evaluate(run.forward, run.test_loader, run.device, amp=run.amp, ctx=ctx)
        row |= {key: test[key[5:]] for key in TEST_KEYS}
        if run.ema_forward is not None:
            test_ema = evaluate(run.ema_forward, run.test_loader, run.device, amp=run.amp, ctx=ctx)
            row |= {f"{key}_ema": test_ema[key[5:]] for key in TEST_KEYS}
    else:  # not evaluated this epoch (eval_every)
        row |= {key: None for key in TEST_KEYS} | ({f"{k}_ema": None for k in TEST_KEYS} if run.ema_forward else {})
    return row | {"epoch_time_s": time.perf_counter() - t0, "img_per_s": train["n"] / train_time}


def _save_epoch(run: _Session, row: dict[str, Any], best_top1: float, writer: Any) -> float:
    """Checkpoints (``last.pt``; ``best.pt`` at a new best top-1; ``epoch_N.pt`` every ``save_every``), the metrics
    tables and TensorBoard scalars of the epoch just finished; returns the best top-1 so far."""
    epoch = row["epoch"]
    state = {
        "model_name": run.config.model,
        "model_kwargs": run.model_kwargs,
        "model": run.model.state_dict(),
        "data_info": run.info.to_dict(),
        "epoch": epoch,
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "config": run.config.to_dict(),
        "metrics": run.history,
    }
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    save_checkpoint(run.run_dir / "last.pt", state)
    if row["test_top1"] is not None and row["test_top1"] > best_top1:
        best_top1 = row["test_top1"]
        save_checkpoint(run.run_dir / "best.pt", state)
    if run.config.save_every and epoch % run.config.save_every == 0:
        save_checkpoint(run.run_dir / f"epoch_{epoch}.pt", state)
    save_table(run.history, run.run_dir, "metrics")
    if writer is not None:
        for key, value in row.items():
            if key != "epoch" and value is not None:
                writer.add_scalar(key, value, epoch)
        writer.flush()
    return best_top1


def evaluate(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device | str | None = None,
    amp: bool = False,
    ctx: DistContext | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Score ``model`` (``[B, C, H, W]`` inputs as the loader gives them -> logits) on ``loader``.

    Returns ``{"loss": mean cross-entropy, "top1", "top5" (fractions in [0, 1]), "n": images}``, summed over all
    ranks when
    ``ctx`` is distributed (each rank then holds a disjoint shard).
    """
    ctx = ctx or DistContext()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    loss_sum = top1 = top5 = n = 0.0
    classes = 0
    with torch.no_grad():
        for images, labels in progress_bar(loader, desc="eval", leave=False, enabled=progress):
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with _autocast(device, amp):
                logits = model(images)
            logits = logits.float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            classes = logits.shape[1]
            k = min(5, classes)
            hits = logits.topk(k, dim=1).indices == labels[:, None]
            top1 += hits[:, 0].sum().item()
            top5 += hits.any(dim=1).sum().item()
            n += len(labels)
    model.train(was_training)
    loss_sum, top1, top5, n = ctx.all_reduce_sum([loss_sum, top1, top5, n], device)
    if n == 0:
        raise ValueError("cannot evaluate on an empty data set")
    top5_frac = top5 / n if classes > 5 else None  # top-k only where k < classes (else always 1)
    return {"loss": loss_sum / n, "top1": top1 / n, "top5": top5_frac, "n": int(n)}


def evaluate_checkpoint(path: str | Path, **options: Any) -> dict[str, Any]:
    """Score the checkpoint at ``path`` with the options of :class:`~.config.EvalConfig` (their defaults there;
    ``checkpoint``, ``out`` and ``overwrite`` are the command's): its model EMA with ``ema``, on ``split`` of
    ``data`` (none: the data it was trained on; other data is refused unless ``other_data``).

    The images are loaded at the model's input size and normalised with the checkpoint's statistics.
    Returns ``{"checkpoint", "weights" ("raw" or "EMA"), "data", "trained_on", "split", "loss", "top1", "top5",
    "n"}``.
    """
    config = EvalConfig.from_dict({**options, "checkpoint": str(path)})
    data, split, ema, batch_size = config.data, config.split, config.ema, config.batch_size
    other_data, progress = config.other_data, config.progress
    dev = resolve_device(config.device)
    model, info, ckpt = model_from_checkpoint(path, map_location=dev, ema=ema)
    trained = trained_on(ckpt)
    data = data or trained["data"]
    check_data(path, ckpt, data, None, other_data=other_data)
    dataset = load_dataset(data, split, info.img_size[0] if info.img_size[0] == info.img_size[1] else None)
    got = dataset.info
    if (got.num_classes, got.in_chans, tuple(got.img_size)) != (info.num_classes, info.in_chans, tuple(info.img_size)):
        raise ValueError(
            f"checkpoint {str(path)!r} expects {plural(info.num_classes, 'class')} of {info.in_chans}-channel "
            f"{info.img_size[0]}x{info.img_size[1]} images but {data!r} has {plural(got.num_classes, 'class')} of "
            f"{got.in_chans}-channel {got.img_size[0]}x{got.img_size[1]} images"
        )
    net = with_normalize(model, info.mean, info.std).to(dev)
    loader = DataLoader(dataset, batch_size, pin_memory=dev.type == "cuda")
    scores = evaluate(net, loader, dev, progress=progress)
    row = {"checkpoint": str(path), "weights": "EMA" if ema else "raw", "data": data, "trained_on": trained["data"]}
    return row | {"split": split, **scores}


def build_model(config: TrainConfig, info: DatasetInfo) -> tuple[nn.Module, dict[str, Any]]:
    """``create_model`` for ``info``'s classes, channels and image size; returns the model and its kwargs.

    Without an explicit ``img_size`` the data must already have the size the model is registered for, so that a
    model is never silently built for an input it was not designed for (``vit_micro_patch16`` on 32x32 digits).
    """
    defaults = model_defaults(config.model)
    size = tuple(info.img_size)
    if config.img_size is None and "img_size" in defaults:
        want = defaults["img_size"]
        want = (want, want) if isinstance(want, int) else tuple(want)
        if want != size:
            raise ValueError(
                f"model {config.model!r} is registered for {want[0]}x{want[1]} images but {config.data!r} gives "
                f"{size[0]}x{size[1]}: pass img_size (--img-size) to resize the data and build the model for that "
                f"size (e.g. --img-size {want[0]})"
            )
    kwargs = {
        **config.model_kwargs,
        "num_classes": info.num_classes,
        "in_chans": info.in_chans,
        "img_size": list(size),
    }
    try:
        return create_model(config.model, **kwargs), kwargs
    except ValueError as err:
        valid = sizes_that_build(config.model, size[0], **{**kwargs, "img_size": None}) if size[0] == size[1] else []
        hint = f"; sizes near {size[0]} that work: {', '.join(map(str, valid))} (--img-size N)" if valid else ""
        raise ValueError(
            f"cannot build {config.model!r} for {size[0]}x{size[1]} {info.name} images: {err}{hint}"
        ) from err
    except TypeError as err:
        raise ValueError(f"model {config.model!r} does not take these arguments (check model_kwargs): {err}") from err


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices/kernels only, none on norms, biases, embeddings and tokens.

    A model may name more parameters to exempt with a ``no_weight_decay()`` method returning names (timm's hook).
    """
    extra = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        exempt = p.ndim <= 1 or name in extra or any(leaf.endswith(s) for s in NO_DECAY_NAMES)
        (no_decay if exempt else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def batch_scale(config: TrainConfig, world_size: int) -> float:
    """``global batch / ref_batch`` (the linear scaling rule of lr and EMA decay), 1 without ``ref_batch``."""
    return config.batch_size * world_size / config.ref_batch if config.ref_batch else 1.0


def lr_schedule(config: TrainConfig, steps_per_epoch: int, peak_lr: float | None = None) -> Callable[[int], float]:
    """Per-step factor of the peak lr (``peak_lr``, default ``config.lr``): linear warm-up to 1, then cosine decay
    to ``min_lr / peak_lr``."""
    total = config.epochs * steps_per_epoch
    warmup = round(config.warmup_epochs * steps_per_epoch)
    floor = config.min_lr / (peak_lr or config.lr)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def schedule_warning(config: TrainConfig) -> str:
    """The warning for a warm-up as long as the schedule: the learning rate only rises and never decays."""
    return (
        f"warning: the warm-up ({config.warmup_epochs:g} epochs) covers the whole {plural(config.epochs, 'epoch')} "
        "schedule: the learning rate rises to its peak and never decays. Use a shorter --warmup-epochs (e.g. "
        f"{config.epochs / 4:g}) or more --epochs"
    )


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy of ``logits [B, K]`` against soft ``targets [B, K]`` smoothed towards uniform."""
    if smoothing:
        targets = targets * (1.0 - smoothing) + smoothing / targets.shape[1]
    return torch.sum(-targets * F.log_softmax(logits, dim=1), dim=1).mean()


def epoch_seed(seed: int, epoch: int, rank: int, stream: int) -> int:
    """A 63-bit seed for one random ``stream`` (data order, augmentation, dropout) of one epoch on one rank."""
    return int(np.random.SeedSequence([seed, epoch, rank, stream]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _train_epoch(run: _Session, batches: Iterable, aug_gen: torch.Generator, epoch: int) -> dict[str, float]:
    """One pass over the training data; returns ``{"loss", "acc" (a fraction), "n"}`` summed over ranks."""
    net, optimizer, config, device, ctx = run.forward, run.optimizer, run.config, run.device, run.ctx
    net.train()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    loss_sum = correct = n = 0.0
    for step, (images, labels) in enumerate(batches):
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        images, targets = run.augment(images, labels, aug_gen)  # random draws on the CPU generator, work on device
        with _autocast(device, run.amp):
            logits = net(images)
        loss = soft_cross_entropy(logits.float(), targets, config.label_smoothing)
        (value,) = ctx.all_reduce_sum([loss.item()], device)
        if not math.isfinite(value):
            lr = optimizer.param_groups[0]["lr"]
            raise NonFiniteLossError(
                f"training loss became {value} at epoch {epoch + 1}, step {step + 1} (lr {lr:.3g})"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_grad is not None:
            nn.utils.clip_grad_norm_(params, config.clip_grad)
        optimizer.step()
        run.scheduler.step()
        if run.ema is not None:
            run.ema.update(run.model, step=run.scheduler.last_epoch)
        loss_sum += loss.item() * len(labels)
        correct += (logits.argmax(1) == targets.argmax(1)).sum().item()
        n += len(labels)
        if hasattr(batches, "set_postfix"):
            batches.set_postfix(loss=f"{loss.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    loss_sum, correct, n = ctx.all_reduce_sum([loss_sum, correct, n], device)
    return {"loss": loss_sum / n, "acc": correct / n, "n": n}


def _loaders(
    train_set: Dataset,
    test_set: Dataset,
    config: TrainConfig,
    ctx: DistContext,
    device: torch.device,
    gen: torch.Generator,
) -> tuple[DataLoader, DataLoader]:
    """Shuffled training batches (this rank's shard under DDP; repeated augmentation with ``repeated_aug``) and this
    rank's unpadded shard of the test set."""
    if config.repeated_aug > 1:
        sampler = RepeatAugSampler(len(train_set), config.repeated_aug, ctx.world_size, ctx.rank, config.seed)
    elif ctx.distributed:
        sampler = DistributedSampler(train_set, ctx.world_size, ctx.rank, shuffle=True, seed=config.seed)
    else:
        sampler = RandomSampler(train_set, generator=gen)
    common = dict(batch_size=config.batch_size, num_workers=config.num_workers, pin_memory=device.type == "cuda")
    test_shard = Subset(test_set, shard_indices(len(test_set), ctx.rank, ctx.world_size))
    return DataLoader(train_set, sampler=sampler, generator=gen, **common), DataLoader(test_shard, **common)


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    """One line per epoch: training loss and accuracy, test metrics when evaluated, time and throughput."""
    test = "not evaluated (eval_every)"
    if row["test_top1"] is not None:
        ema = f" (EMA {row['test_top1_ema']:.4f})" if row.get("test_top1_ema") is not None else ""
        top5 = f" top-5 {row['test_top5']:.4f}" if row["test_top5"] is not None else ""
        test = f"test loss {row['test_loss']:.4f} top-1 {row['test_top1']:.4f}{ema}{top5}"
    return (
        f"epoch {row['epoch']}/{epochs}  train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}  {test}  "
        f"{row['epoch_time_s']:.1f}s ({row['img_per_s']:.0f} img/s)"
    )


def _check_resumable(ckpt: dict[str, Any], config: TrainConfig, path: Path) -> None:
    missing = [k for k in ("epoch", "optimizer", "scheduler", "config", "metrics") if k not in ckpt]
    if missing:
        raise ValueError(f"checkpoint {str(path)!r} holds no training state ({', '.join(missing)} missing)")
    saved = TrainConfig.from_dict(ckpt["config"])
    changes = describe_changes(saved.to_dict(), config.to_dict(), ignore=RUNTIME_KEYS)
    if changes:
        raise ValueError(
            f"cannot resume {str(path)!r} with a different config ({changes}). To go on: resume with the "
            "checkpoint's settings (leave out what changed), start again with --overwrite (deletes the run), or "
            "train into another --out"
        )


def _resume_path(config: TrainConfig, run_dir: Path) -> Path | None:
    """The checkpoint to continue from, or ``None``; refuses to silently overwrite another run's checkpoints."""
    last = run_dir / "last.pt"
    if config.resume == AUTO:
        if config.out is None:
            raise ValueError("resume='auto' needs out (--out): the run folder whose last.pt to continue")
        return last if last.is_file() else None
    if config.resume is not None:
        path = Path(config.resume)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint to resume {str(path)!r} does not exist")
        return path
    if not config.overwrite:
        claim_outputs(run_dir, RUN_FILES, resume_flag="--resume")
    return None


def saved_config(resume: str | None, out: str | None) -> TrainConfig | None:
    """The config stored in the checkpoint a run would resume from (``resume`` a path, or ``'auto'`` with ``out``),
    with its runtime keys back at their defaults; ``None`` when there is none. Resuming without a YAML file starts
    from it, so only what changes needs a flag."""
    if resume is None or (resume == AUTO and out is None):
        return None
    path = Path(out) / "last.pt" if resume == AUTO else Path(resume)
    if not path.is_file():
        return None
    saved = load_checkpoint(path).get("config")
    if saved is None:
        return None
    defaults = TrainConfig().to_dict()
    return TrainConfig.from_dict({k: defaults[k] if k in RUNTIME_KEYS - {"out"} else v for k, v in saved.items()})


def _autocast(device: torch.device, amp: bool):
    return torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda" else nullcontext()


def _shard_len(n: int, ctx: DistContext) -> int:
    return math.ceil(n / ctx.world_size)


def _timestamp(ctx: DistContext) -> str:
    if ctx.world_size > 1:
        raise ValueError("under torchrun pass out (--out): every rank must write to the same run folder")
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def _tensorboard(run_dir: Path) -> Any:
    """A TensorBoard ``SummaryWriter`` on ``run_dir``, or ``None`` when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(run_dir))
