"""Experiments with the simplified model: training with association tracking, and the transfer experiment."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.synthetic import SyntheticConfig, SyntheticSamples, make_features, make_partition, sample_synthetic
from ..probes.association import association_report, vit_attention_matrix
from ..runtime import progress_bar
from .config import TRANSFER_ARMS, FitSettings
from .model import SimplifiedViT

Row = dict[str, Any]
TEST_SEED_OFFSET = 1_000_003


def build_model(cfg: SyntheticConfig, **model_kwargs: Any) -> SimplifiedViT:
    return SimplifiedViT(cfg.num_patches, cfg.d, num_classes=cfg.num_classes, **model_kwargs)


@torch.no_grad()
def evaluate(model: SimplifiedViT, data: SyntheticSamples, batch_size: int = 8192) -> dict[str, float]:
    """Mean loss and accuracy of ``model`` on ``data``."""
    loss, correct = 0.0, 0
    for i in range(0, len(data.labels), batch_size):
        x, y = data.x[i : i + batch_size], data.labels[i : i + batch_size]
        logits = model(x)
        loss += float(model.loss(logits, y)) * len(y)
        correct += int((model.predict(logits) == y).sum())
    n = len(data.labels)
    return {"loss": loss / n, "acc": correct / n}


def fit(
    model: SimplifiedViT,
    train: SyntheticSamples,
    settings: FitSettings,
    on_eval: Callable[[int], Row] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> list[Row]:
    """Train ``model`` on ``train``; every ``eval_every`` steps (and at 0 and the end) record ``on_eval(step)``."""
    attn = [p for n, p in model.named_parameters() if n != "values"] if settings.train_attention else []
    groups = [{"params": [model.values]}] + ([{"params": attn, "lr": settings.attn_lr or settings.lr}] if attn else [])
    opt = torch.optim.SGD(groups, lr=settings.lr)
    g = torch.Generator().manual_seed(seed)
    n = len(train.labels)
    history: list[Row] = [on_eval(0)] if on_eval else []
    for step in progress_bar(range(1, settings.steps + 1), desc="train", leave=False, enabled=progress):
        idx = torch.randint(n, (settings.batch_size,), generator=g) if settings.batch_size else slice(None)
        loss = model.loss(model(train.x[idx]), train.labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if settings.max_step is not None:
            for group in opt.param_groups:
                torch.nn.utils.clip_grad_norm_(group["params"], settings.max_step / group["lr"])
        opt.step()
        if settings.reset_diagonal:
            model.reset_diagonal()
        if on_eval and (step % settings.eval_every == 0 or step == settings.steps):
            history.append(on_eval(step))
    return history


@dataclass
class TrainResult:
    model: SimplifiedViT
    history: list[Row]
    groups: torch.Tensor

    @property
    def final(self) -> Row:
        return self.history[-1]


def train_association(
    cfg: SyntheticConfig,
    *,
    n_train: int,
    n_test: int,
    settings: FitSettings,
    model_kwargs: dict[str, Any],
    seed: int,
    cluster: str | None,
    progress: bool,
) -> TrainResult:
    """Train the positional-attention model from random init on task ``cfg``, tracking test accuracy, the
    alignment ``cos(v, w*)`` and the association metrics of ``A`` at every evaluation (``cluster`` None: no ARI).
    The settings come from a :class:`~spatialvit.synth.config.SynthTrainConfig` (its defaults are the image
    preset)."""
    torch.manual_seed(seed)
    model = build_model(cfg, **model_kwargs)
    if model.attention_kind != "positional":
        raise ValueError("association is tracked for positional attention; use attention='positional'")
    train = sample_synthetic(cfg, n_train, seed=seed)
    test = sample_synthetic(cfg, n_test, seed=seed + TEST_SEED_OFFSET)
    groups, feats = make_partition(cfg), make_features(cfg)

    def on_eval(step: int) -> Row:
        tr, te = evaluate(model, train), evaluate(model, test)
        row = {"step": step, "train_loss": tr["loss"], "train_acc": tr["acc"], "test_acc": te["acc"]}
        row["cos_v_w"] = model.value_alignment(feats)
        row.update(association_report(model.attention().detach(), groups, method=cluster))
        return row

    history = fit(model, train, settings, on_eval, seed=seed, progress=progress)
    return TrainResult(model, history, groups)


def global_count_accuracy(cfg: SyntheticConfig, data: SyntheticSamples) -> float:
    """Accuracy of the structure-blind baseline that sums ``<w_k, X_j>`` over *all* patches (no groups)."""
    scores = data.x.sum(1) @ make_features(cfg).T  # [n, K]
    pred = (scores[:, 0] > 0).long() if cfg.num_classes == 2 else scores.argmax(-1)
    return float((pred == data.labels).float().mean())


def bayes_accuracy(cfg: SyntheticConfig, data: SyntheticSamples) -> float:
    """Accuracy of the Bayes-optimal classifier that knows the groups and the features (ties count 1/2).

    The noise is orthogonal to the features, so ``<w_k, X_j>`` gives every patch's coefficient exactly. Under the
    data model the posterior of class k is proportional to the number of groups whose patches all carry ``w_k``
    (binary: ``+w*`` vs ``-w*``), the distractor likelihoods being common factors, so the rule is: the class with
    the most fully coherent groups."""
    coef = (data.x @ make_features(cfg).T).round()  # [n, D, K]
    if cfg.num_classes == 2:
        coef = torch.cat([(coef == -1).float(), (coef == 1).float()], -1)  # class 0 is y = -1
    member = torch.nn.functional.one_hot(make_partition(cfg), cfg.num_groups).float()  # [D, L]
    full = torch.einsum("ndk,dl->nlk", (coef == 1).float(), member) == cfg.group_size  # group l all class k
    counts = full.sum(1).float()  # [n, K]
    best = counts == counts.max(-1, keepdim=True).values
    return float((best.gather(1, data.labels[:, None])[:, 0] / best.sum(-1)).mean())


def transfer_experiment(
    cfg: SyntheticConfig,
    *,
    ns: Sequence[int],
    arms: Sequence[str],
    pretrain_n: int,
    pretrain: FitSettings,
    finetune: FitSettings,
    n_test: int,
    seeds: Sequence[int],
    model_kwargs: dict[str, Any],
    progress: bool,
) -> tuple[list[Row], TrainResult]:
    """Pre-train on task ``cfg`` (feature ``w*``), then learn task 2 (same groups, orthogonal feature ``w'``) from
    ``n`` samples with (a) ``frozen`` pre-trained attention, (b) ``reinit`` attention (trained from the initial
    ``Q``), (c) ``content`` attention; value vectors always start afresh. One row per (arm, n, seed)."""
    unknown = set(arms) - set(TRANSFER_ARMS)
    if unknown:
        raise ValueError(f"arms must be among {TRANSFER_ARMS}, got {sorted(unknown)}")
    if min(ns) < 1:
        raise ValueError(f"every n must be a positive sample count, got {list(ns)}")
    kwargs = dict(model_kwargs)
    pre = train_association(
        cfg,
        n_train=pretrain_n,
        n_test=n_test,
        settings=pretrain,
        model_kwargs=kwargs,
        seed=0,
        cluster=None,
        progress=progress,
    )
    task2 = cfg.transfer_task()
    test = sample_synthetic(task2, n_test, seed=TEST_SEED_OFFSET)
    groups = make_partition(task2)
    rows: list[Row] = []
    jobs = [(arm, n, s) for n in ns for arm in arms for s in seeds]
    for arm, n, s in progress_bar(jobs, desc="transfer", enabled=progress):
        torch.manual_seed(1000 + s)
        model = build_model(task2, **{**kwargs, "attention": "content" if arm == "content" else "positional"})
        if arm == "frozen":
            model.q.data.copy_(pre.model.q.detach())
        train = sample_synthetic(task2, n, seed=1000 * (s + 1) + n)
        settings = FitSettings(**{**finetune.__dict__, "train_attention": arm != "frozen"})
        fit(model, train, settings, seed=s)
        row: Row = {"arm": arm, "n": n, "seed": s, "test_acc": evaluate(model, test)["acc"]}
        assoc = None if arm == "content" else association_report(model.attention(), groups, None)
        row["mass"] = float("nan") if assoc is None else assoc["mass"]
        row["chance_mass"] = float("nan") if assoc is None else assoc["chance_mass"]
        rows.append(row)
    return rows, pre


def summarise_transfer(rows: Sequence[Row]) -> list[Row]:
    """Mean and std of test accuracy over seeds, one row per (arm, n)."""
    out: list[Row] = []
    keys = sorted({(r["arm"], r["n"]) for r in rows}, key=lambda k: (TRANSFER_ARMS.index(k[0]), k[1]))
    for arm, n in keys:
        acc = torch.tensor([r["test_acc"] for r in rows if r["arm"] == arm and r["n"] == n], dtype=torch.float64)
        std = float(acc.std()) if len(acc) > 1 else 0.0
        out.append({"arm": arm, "n": n, "seeds": len(acc), "test_acc_mean": float(acc.mean()), "test_acc_std": std})
    return out


JELASSI_ASSOCIATION = "our model implicitly learns the spatial structure of the dataset while generalizing"
JELASSI_TRANSFER = (
    "patch association helps to sample-efficiently transfer to downstream datasets that share the same structure as "
    "the pre-training one"
)
MASS_DELTA = 0.05


def transfer_claims(rows: Sequence[Row]) -> list[Row]:
    """Jelassi et al.'s two synthetic claims on the transfer runs (one row per arm, n and seed), with the study's
    verdict machinery (:func:`spatialvit.study.claims.evaluate_claims`: paired by seed, Holm over the claims):
    (j1) positional attention trained on task 2 from its initial ``Q`` (the ``reinit`` arm, at the largest n) puts
    more attention mass on the hidden groups than uniform attention, by more than 0.05; (j2@n) frozen pre-trained
    attention is more accurate than re-initialised attention, at every n."""
    from ..study.claims import ACCURACY_DELTA, ACCURACY_REASON, JELASSI, Claim, evaluate_claims

    ns = sorted({r["n"] for r in rows})
    per_seed: dict[tuple[str, int], Row] = {}
    for r in rows:
        row = per_seed.setdefault((r["arm"], r["seed"]), {"model": r["arm"], "seed": r["seed"]})
        row[f"test_acc_n{r['n']}"] = r["test_acc"]
        excess = r["mass"] - r["chance_mass"]
        row[f"mass_excess_n{r['n']}"] = None if math.isnan(excess) else excess
    claims = [
        Claim(
            id="j1",
            source=JELASSI,
            quote=JELASSI_ASSOCIATION,
            text=f"Positional attention learned from {ns[-1]} samples concentrates on the hidden groups",
            measure=f"mass_excess_n{ns[-1]}",
            model="reinit",
            reference=None,
            kind="superiority",
            delta=MASS_DELTA,
            delta_reason="5 % of the attention mass beyond what uniform attention puts on a query's group",
        ),
        *[
            Claim(
                id=f"j2@n={n}",
                source=JELASSI,
                quote=JELASSI_TRANSFER,
                text=f"Frozen pre-trained attention beats attention learned afresh from {n} samples",
                measure=f"test_acc_n{n}",
                model="frozen",
                reference="reinit",
                kind="superiority",
                delta=ACCURACY_DELTA,
                delta_reason=ACCURACY_REASON,
            )
            for n in ns
        ],
    ]
    arms = {r["arm"] for r in rows}
    return evaluate_claims(claims, list(per_seed.values()), {a: a for a in ("frozen", "reinit") if a in arms})


def vit_association(
    model: torch.nn.Module,
    images: torch.Tensor,
    cfg: SyntheticConfig,
    per_head: bool = False,
    cluster: str | None = "spectral",
) -> tuple[list[Row], dict[int, torch.Tensor]]:
    """Association of every block of a ViT (``attention_maps`` hook) on normalised ``images`` of task ``cfg``:
    one row per block (heads averaged) and, with ``per_head``, per head; plus the head-averaged ``A`` per block."""
    groups = make_partition(cfg)
    rows: list[Row] = []
    maps: dict[int, torch.Tensor] = {}
    num_heads = [m.shape[1] for m in model.attention_maps(images[:1])]
    for block, h in enumerate(num_heads):
        heads = [None] + (list(range(h)) if per_head else [])
        for head in heads:
            A = vit_attention_matrix(model, images, block, cfg.grid, head=head)
            if head is None:
                maps[block] = A
            row = {"block": block, "head": "mean" if head is None else head}
            rows.append({**row, **association_report(A, groups, cluster)})
    return rows, maps
