"""Training a denoiser with checkpoints and exact resume, and rebuilding one from its checkpoint.

The denoiser checkpoint is a spatialvit checkpoint (atomic write, ``weights_only`` read) with ``kind="denoiser"``,
``model_name="dit"``, ``model_kwargs`` (rebuilds the :class:`DiT`), ``model`` (raw weights), ``ema`` (EMA state),
``data_info``, and the training state: ``step``, ``optimizer``, ``rng`` (the generator that draws batches, times,
noise and label dropout), ``config`` and ``losses``. Resuming restores all of it, so a run stopped at step k and
resumed gives the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import AUTO
from ..data import DatasetInfo, load_dataset
from ..report.tables import save_table
from ..runtime import describe_changes, eta, progress_bar
from ..train.checkpoint import load_checkpoint, save_checkpoint
from .config import DenoiserConfig, GenerateTrainConfig
from .flow import EMA, flow_matching_loss
from .model import DiT, create_dit

KIND = "denoiser"
log = logging.getLogger(__name__)


def _lr_lambda(warmup: int) -> Callable[[int], float]:
    return lambda step: min(1.0, (step + 1) / max(warmup, 1))


def train_denoiser(
    model: DiT,
    images: torch.Tensor,
    labels: torch.Tensor,
    info: DatasetInfo,
    config: DenoiserConfig,
    checkpoint: str | os.PathLike,
    resume: bool | str | os.PathLike = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``model`` by flow matching on ``images[N, C, H, W]`` (in [0, 1]) and ``labels[N]``.

    Writes ``checkpoint`` every ``config.checkpoint_every`` steps and at the end. ``resume``: ``True`` (or
    ``"auto"``) continues from ``checkpoint`` when it exists, a path continues from that checkpoint; the model's
    architecture, data and config must match (only ``steps`` and ``checkpoint_every`` may change). Returns the final
    checkpoint dict (``losses[i]`` is the loss of step ``i``).
    """
    if images.ndim != 4 or len(images) != len(labels):
        raise ValueError(f"images must be [N, C, H, W] with one label each, got {tuple(images.shape)}")
    device, data = next(model.parameters()).device, images.float().mul(2).sub(1)  # pixels [0, 1] -> [-1, 1]
    ema = EMA(model, config.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config.warmup))
    gen, step, losses = torch.Generator().manual_seed(config.seed), 0, []
    model_kwargs = dict(model.config)
    source = _resume_source(checkpoint, resume)
    if source is not None:
        ckpt = load_denoiser_checkpoint(source)
        _check_resumable(ckpt, source, model_kwargs, info, config)
        for part, key in ((model, "model"), (ema, "ema"), (opt, "optimizer"), (sched, "scheduler")):
            part.load_state_dict(ckpt[key])
        gen.set_state(ckpt["rng"])
        step, losses = ckpt["step"], list(ckpt["losses"])

    def state() -> dict[str, Any]:
        return {
            "kind": KIND,
            "model_name": "dit",
            "model_kwargs": model_kwargs,
            "model": model.state_dict(),
            "ema": ema.state_dict(),
            "data_info": info.to_dict(),
            "step": step,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": gen.get_state(),
            "config": asdict(config),
            "losses": losses,
        }

    model.train()
    t0, first = time.perf_counter(), step
    bar = progress_bar(total=config.steps, initial=step, desc="train denoiser", enabled=progress)
    while step < config.steps:
        idx = torch.randint(len(data), (config.batch_size,), generator=gen)
        loss = _optimise(model, opt, (data[idx].to(device), labels[idx].to(device)), gen=gen, config=config)
        sched.step()
        ema.update(model)
        losses.append(loss)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
        if step % config.checkpoint_every == 0 or step == config.steps:
            save_checkpoint(checkpoint, state())
            recent, took = losses[-config.checkpoint_every :], time.perf_counter() - t0
            left = eta(took, step - first, config.steps - first)
            log.info("step %d/%d  mean loss of the last %d steps %.4f  %.0f s  %s", step, config.steps, len(recent),
                     sum(recent) / len(recent), took, left)  # fmt: skip
    bar.close()
    return state()


def _optimise(
    model: DiT,
    opt: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, torch.Tensor],
    *,
    gen: torch.Generator,
    config: DenoiserConfig,
) -> float:
    """One optimiser step on the flow-matching loss of ``batch`` (images in [-1, 1], labels); returns the loss."""
    x0, y = batch
    loss = flow_matching_loss(
        model, x0, y, generator=gen, label_dropout=config.label_dropout, t_sampling=config.t_sampling
    )
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if config.grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    opt.step()
    return loss.item()


def _resume_source(checkpoint: str | os.PathLike, resume: bool | str | os.PathLike) -> Path | None:
    """The checkpoint a run continues from: ``checkpoint`` itself for ``True``/``'auto'`` (when it exists), the
    path ``resume`` (which must exist), or ``None``."""
    if resume in (True, AUTO):
        return Path(checkpoint) if Path(checkpoint).is_file() else None
    if not resume:
        return None
    if not Path(resume).is_file():
        raise FileNotFoundError(f"checkpoint to resume {str(resume)!r} does not exist")
    return Path(resume)


def _check_resumable(
    ckpt: dict[str, Any], source: Path, model_kwargs: dict[str, Any], info: DatasetInfo, config: DenoiserConfig
) -> None:
    """Refuse to resume with another model, data or config (a resumed run may go on longer: ``steps`` and
    ``checkpoint_every`` may change), naming only the keys that differ."""
    changes = describe_changes(ckpt["model_kwargs"], model_kwargs)
    changes = changes or describe_changes(DatasetInfo.from_dict(ckpt["data_info"]).to_dict(), info.to_dict())
    changes = changes or describe_changes(ckpt["config"], asdict(config), ignore=("steps", "checkpoint_every"))
    if changes:
        raise ValueError(f"cannot resume {str(source)!r} with a different model, data or config ({changes})")


def train_on_dataset(
    config: GenerateTrainConfig, *, device: str | torch.device
) -> tuple[DiT, dict[str, Any], list[dict[str, float]]]:
    """Train a ``config.size`` DiT with the token mixer ``config.mixer`` on the training split of ``config.data``
    (resized to ``config.img_size``, square) with ``config.denoiser``; writes ``OUT/denoiser.pt`` and ``OUT/losses.*``
    (the loss averaged over 20 windows). Returns the model, the final checkpoint dict and the loss rows."""
    torch.manual_seed(config.denoiser.seed)
    dataset = load_dataset(config.data, "train", img_size=config.img_size)
    info = dataset.info
    if info.img_size[0] != info.img_size[1]:
        raise ValueError(f"the denoiser needs square images, got {info.img_size}")
    model = create_dit(
        config.size,
        img_size=info.img_size[0],
        patch_size=config.patch_size,
        in_chans=info.in_chans,
        num_classes=info.num_classes,
        attn_layer=config.mixer,
        attn_kwargs=config.attn_kwargs,
    ).to(device)
    images = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))])
    out = Path(config.out)
    ckpt = train_denoiser(
        model,
        images,
        labels,
        info=info,
        config=config.denoiser,
        checkpoint=out / "denoiser.pt",
        resume=config.resume or False,
        progress=config.progress,
    )
    losses = ckpt["losses"]
    window = max(1, len(losses) // 20)
    rows = [
        {"step": i + len(chunk), "loss": sum(chunk) / len(chunk)}
        for i in range(0, len(losses), window)
        for chunk in [losses[i : i + window]]
    ]
    save_table(rows, out, "losses")
    return model, ckpt, rows


def load_denoiser_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a denoiser checkpoint; a classifier checkpoint (or anything else) raises a clear ``ValueError``."""
    ckpt = load_checkpoint(path)
    if ckpt.get("kind") != KIND:
        raise ValueError(f"{str(path)!r} is not a denoiser checkpoint (write one with `spatialvit generate train`)")
    return ckpt


def denoiser_from_checkpoint(path: str | os.PathLike, use_ema: bool = True) -> tuple[DiT, DatasetInfo, dict[str, Any]]:
    """Rebuild the denoiser at ``path`` (EMA weights by default); returns ``(model in eval mode, data info, ckpt)``."""
    ckpt = load_denoiser_checkpoint(path)
    model = DiT(**ckpt["model_kwargs"])
    if use_ema:
        ema = EMA(model)
        ema.load_state_dict(ckpt["ema"])
        model = ema.module
    else:
        model.load_state_dict(ckpt["model"])
    return model.eval(), DatasetInfo.from_dict(ckpt["data_info"]), ckpt
