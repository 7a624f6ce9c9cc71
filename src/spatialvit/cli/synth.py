"""``spatialvit synth``: synthetic spatially structured data — train positional attention, measure patch
association, transfer to a new feature on the same groups."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..config import add_arguments, given
from ..probes.config import CLUSTER_METHODS
from ..synth.config import ACTIVATION_NAMES, SIMPLIFIED, TRANSFER_ARMS, FitSettings
from .common import command, positive_int

# What each action writes into --out.
TRAIN_FILES = ("history.*", "summary.*", "attention.png", "association.png", "model.pt")
ASSOCIATE_FILES = ("association.*", "attention.png")
TRANSFER_FILES = ("transfer_runs.*", "transfer.*", "claims.*")
# Data + optimisation defaults. 'small' is the re-implementation's setting: 10 patches of dimension 100 in random
# pairs, 50k samples, 300 full-batch GD steps at lr 0.1. The step sizes of Q were chosen on seed 0 (docs/synthetic.md).
PRESETS = {
    "image": dict(
        data="", n_train=10_000, value_init_std=0.05, fit=FitSettings(steps=600, attn_lr=1000.0, max_step=0.3)
    ),
    "small": dict(
        data="grid=1x10,d=100,group=1x2,partition=random",
        n_train=50_000,
        value_init_std=0.01,
        fit=FitSettings(steps=300, attn_lr=100.0),
    ),
}
DATA_HELP = (
    "data options key=value,... : grid=8 (or HxW), d=48, group=2 (or 2x2), partition=local|random, q=(default "
    "log(d)/D), sigma=(default 1/sqrt(d)), num_classes=2, task_seed=0, patch_pixels=4, in_chans=3"
)


DESCRIPTION = """\
synthetic structured data: positional attention, patch association, transfer

Jelassi et al.'s synthetic task: the label lives in one hidden group of patches. 'train' fits the
simplified positional-attention model and tracks how its attention matches the groups; 'associate'
measures patch association of a saved model (simplified, or a ViT checkpoint trained on the 'synthetic'
dataset); 'transfer' pre-trains on one feature and learns an orthogonal one on the same groups from n
samples with frozen, re-initialised or content attention.
"""
TRAIN_EXAMPLES = """\
spatialvit synth train --out runs/synth/image                  # the 8x8 image preset (about a minute)
spatialvit synth train --preset small --out runs/synth/small
"""
ASSOCIATE_EXAMPLES = """\
spatialvit synth associate runs/synth/image/model.pt --out runs/synth/assoc
"""
TRANSFER_EXAMPLES = """\
spatialvit synth transfer --preset small --ns 1,2,4,8 --num-seeds 3 --out runs/synth/transfer
"""
EXAMPLES = TRAIN_EXAMPLES + ASSOCIATE_EXAMPLES + TRANSFER_EXAMPLES


TRAIN_TEXT = """\
train the simplified model; association over steps, heat-map of A

Train F(X) = sum_i sum_r act(sum_j A_ij <v_r, X_j>), A = softmax(Q), by full-batch gradient
descent on the logistic loss; writes history/summary tables, attention.png, association.png and
model.pt to --out.
"""


ASSOCIATE_TEXT = """\
patch association of a saved model

Association metrics (within-group mass, AUC, top-C precision, ARI) of a model from
'synth train' (model.pt), or of every block of a ViT checkpoint trained on the 'synthetic' image
dataset (pass the same --data options it was trained with).
"""


TRANSFER_TEXT = """\
transfer to a new feature on the same groups: accuracy vs n

Pre-train on feature w*, then learn task 2 (same groups, orthogonal w') from n samples with
(a) frozen pre-trained attention, (b) re-initialised attention, (c) content attention. Writes
transfer_runs / transfer tables and transfer.png to --out.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = command(sub, "synth", DESCRIPTION, EXAMPLES)
    ops = p.add_subparsers(dest="synth_command", metavar="ACTION", required=True)
    t = command(ops, "train", TRAIN_TEXT, TRAIN_EXAMPLES, run_train)
    _data_args(t)
    _fit_args(t)
    t.add_argument("--cluster", choices=CLUSTER_METHODS, default="spectral", help="clustering for the ARI")
    a = command(ops, "associate", ASSOCIATE_TEXT, ASSOCIATE_EXAMPLES, run_associate)
    a.add_argument(
        "model", type=Path, metavar="MODEL_PT", help="model.pt of 'synth train', or a spatialvit ViT checkpoint"
    )
    a.add_argument("--data", metavar="OPTIONS", help=DATA_HELP + " (ViT checkpoints only)")
    a.add_argument("--images", type=positive_int, default=256, help="images averaged for a ViT's attention")
    a.add_argument("--per-head", action="store_true", help="also one row per attention head (ViT)")
    a.add_argument("--cluster", choices=CLUSTER_METHODS, default="spectral", help="clustering for the ARI")
    a.add_argument("--out", type=Path, default=Path("runs/synth/associate"), metavar="DIR", help="output folder")
    a.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    r = command(ops, "transfer", TRANSFER_TEXT, TRANSFER_EXAMPLES, run_transfer)
    _data_args(r)
    _fit_args(r)
    r.add_argument("--ns", default="8,16,32,64,128,256", metavar="N,N,...", help="task-2 sample counts")
    r.add_argument(
        "--arms", default=",".join(TRANSFER_ARMS), metavar="A,B,...", help="arms among frozen,reinit,content"
    )
    r.add_argument(
        "--num-seeds", type=positive_int, default=3, help="repetitions per (arm, n): seeds SEED, SEED+1, ..."
    )
    r.add_argument(
        "--seeds", type=_deprecated_seed_count, dest="num_seeds", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    r.add_argument("--finetune-steps", type=positive_int, default=300, help="GD steps on task 2")


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="image",
        help="'image': the 8x8 grid of 2x2 groups, d=48 (renders as 32x32 RGB), 10k samples, 600 steps; 'small': the "
        "re-implementation's 10 patches, d=100, random pairs, 50k samples, 300 steps",
    )
    p.add_argument("--data", metavar="OPTIONS", help=DATA_HELP + "; overrides the preset's (default: the preset's)")
    p.add_argument("--n-train", type=positive_int, help="training samples (default: preset image 10000, small 50000)")
    p.add_argument("--n-test", type=positive_int, default=2000, help="test samples")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and samples")
    p.add_argument("--out", type=Path, default=Path("runs/synth"), metavar="DIR", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the files of an earlier run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _fit_args(p: argparse.ArgumentParser) -> None:
    small = PRESETS["small"]["fit"]
    g = p.add_argument_group(
        f"optimisation (defaults of --preset image; small: steps {small.steps}, attn-lr {small.attn_lr}, max-step none)"
    )
    add_arguments(g, FitSettings, skip=("train_attention",), defaults=PRESETS["image"]["fit"])
    p.add_argument("--activation", choices=ACTIVATION_NAMES, default="poly5", help="act of F(X) (poly5: z^5 + 0.03 z)")
    p.add_argument("--values", type=int, default=1, metavar="N", help="value vectors per output (default: 1)")
    p.add_argument(
        "--value-init-std",
        type=float,
        metavar="X",
        help="init std of the values (default: preset image 0.05, small 0.01)",
    )


def _config(args: argparse.Namespace) -> tuple[Any, int, FitSettings]:
    from ..data.synthetic import SyntheticConfig

    preset = PRESETS[args.preset]
    cfg = SyntheticConfig.from_string(",".join(filter(None, [preset["data"], args.data])))
    settings = FitSettings.from_dict(given(args, FitSettings), preset["fit"])
    return cfg, args.n_train or preset["n_train"], settings


def _model_kwargs(args: argparse.Namespace) -> dict:
    std = PRESETS[args.preset]["value_init_std"] if args.value_init_std is None else args.value_init_std
    return dict(activation=args.activation, num_values=args.values, value_init_std=std)


def run_train(args: argparse.Namespace) -> int:
    from ..data.synthetic import sample_synthetic, synthetic_info
    from ..report.tables import markdown_table, save_table
    from ..runtime import claim_outputs
    from ..synth.experiments import TEST_SEED_OFFSET, bayes_accuracy, global_count_accuracy, train_association
    from ..synth.plots import plot_association_history, plot_attention_groups
    from ..train.checkpoint import save_checkpoint

    cfg, n_train, settings = _config(args)
    claim_outputs(args.out, TRAIN_FILES, overwrite=args.overwrite)
    kwargs = _model_kwargs(args)
    res = train_association(
        cfg,
        n_train,
        args.n_test,
        settings=settings,
        model_kwargs=kwargs,
        seed=args.seed,
        cluster=args.cluster,
        progress=not args.no_progress,
    )
    test = sample_synthetic(cfg, args.n_test, seed=args.seed + TEST_SEED_OFFSET)  # the run's own test set
    first, last = res.history[0], res.final
    summary = [{"when": "init", **first}, {"when": "final", **last}]
    save_table(res.history, args.out, "history")
    save_table(summary, args.out, "summary")
    plot_attention_groups(
        res.model.attention().detach(),
        res.groups,
        cfg.grid,
        args.out / "attention.png",
        f"learned A (mass {last['mass']:.3f}, test acc {last['test_acc']:.3f})",
    )
    plot_association_history(res.history, args.out / "association.png")
    save_checkpoint(
        args.out / "model.pt",
        {
            "model_name": SIMPLIFIED,
            "model_kwargs": {"num_patches": cfg.num_patches, "dim": cfg.d, "num_classes": cfg.num_classes, **kwargs},
            "model": res.model.state_dict(),
            "data_info": synthetic_info(cfg, (0.5,) * cfg.in_chans, (1.0,) * cfg.in_chans).to_dict(),
            "synthetic": asdict(cfg),
        },
    )
    print(
        markdown_table(
            summary, columns=["when", "step", "test_acc", "cos_v_w", "mass", "chance_mass", "auc", "top_c", "ari"]
        )
    )
    print(
        f"references on the {args.n_test} test samples: Bayes-optimal (knows groups and features) "
        f"{bayes_accuracy(cfg, test):.4f}; structure-blind sum of <w*, X_j> over all patches "
        f"{global_count_accuracy(cfg, test):.4f}"
    )
    print(f"wrote {args.out}/history.*, summary.*, attention.png, association.png, model.pt")
    return 0


def run_associate(args: argparse.Namespace) -> int:
    from ..data import Normalize
    from ..data.synthetic import SyntheticConfig, load_synthetic, make_partition, split_spec
    from ..probes.association import association_report
    from ..report.tables import markdown_table, save_table
    from ..runtime import claim_outputs
    from ..synth.experiments import vit_association
    from ..synth.model import SimplifiedViT
    from ..synth.plots import plot_attention_groups
    from ..train.checkpoint import load_checkpoint, model_from_checkpoint

    claim_outputs(args.out, ASSOCIATE_FILES, overwrite=args.overwrite)
    ckpt = load_checkpoint(args.model)
    rows = []
    if ckpt["model_name"] == SIMPLIFIED:
        cfg = SyntheticConfig(**ckpt["synthetic"])
        model = SimplifiedViT(**ckpt["model_kwargs"])
        model.load_state_dict(ckpt["model"])
        A, groups = model.attention().detach(), make_partition(cfg)
        rows.append({"model": SIMPLIFIED, **association_report(A, groups, args.cluster)})
        plot_attention_groups(A, groups, cfg.grid, args.out / "attention.png", "simplified model")
    else:
        if args.data is None:
            raise ValueError("a ViT checkpoint needs --data with the synthetic options it was trained on")
        cfg = SyntheticConfig.from_string(split_spec(args.data)[0])
        model, info, ckpt = model_from_checkpoint(args.model)
        images = load_synthetic(args.data, "test", None, n=args.images).images
        images = Normalize(info.mean, info.std)(images)  # the normalisation the model was trained with
        vit_rows, maps = vit_association(model, images, cfg, args.per_head, args.cluster)
        rows = [{"model": ckpt["model_name"], **r} for r in vit_rows]
        best = max(maps, key=lambda b: next(r["mass"] for r in vit_rows if r["block"] == b and r["head"] == "mean"))
        plot_attention_groups(
            maps[best],
            make_partition(cfg),
            cfg.grid,
            args.out / "attention.png",
            f"{ckpt['model_name']} block {best} (highest within-group mass)",
        )
    save_table(rows, args.out, "association")
    print(markdown_table(rows))
    print(f"wrote {args.out}/association.*, attention.png")
    return 0


def run_transfer(args: argparse.Namespace) -> int:
    from ..report.tables import markdown_table, save_table
    from ..runtime import claim_outputs
    from ..study.claims import VERDICT_RULE
    from ..study.report import shown_claims
    from ..synth.experiments import summarise_transfer, transfer_claims, transfer_experiment
    from ..synth.plots import plot_transfer

    cfg, n_train, settings = _config(args)
    claim_outputs(args.out, TRANSFER_FILES, overwrite=args.overwrite)
    ns = [int(n) for n in args.ns.split(",") if n.strip()]
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    finetune = dataclasses.replace(settings, steps=args.finetune_steps)
    rows, pre = transfer_experiment(
        cfg,
        ns,
        arms,
        pretrain_n=n_train,
        pretrain=settings,
        finetune=finetune,
        n_test=args.n_test,
        seeds=range(args.seed, args.seed + args.num_seeds),
        model_kwargs=_model_kwargs(args),
        progress=not args.no_progress,
    )
    summary = summarise_transfer(rows)
    claims = transfer_claims(rows)
    save_table(rows, args.out, "transfer_runs")
    save_table(summary, args.out, "transfer")
    if claims:
        save_table(claims, args.out, "claims")
    plot_transfer(summary, args.out / "transfer.png")
    print(f"pre-training on task 1: test acc {pre.final['test_acc']:.4f}, within-group mass {pre.final['mass']:.3f}")
    print(markdown_table(summary))
    if claims:
        print("\n" + markdown_table(shown_claims(claims)) + "\n\n" + VERDICT_RULE)
    print(f"wrote {args.out}/transfer_runs.*, transfer.*, {'claims.*, ' if claims else ''}transfer.png")
    return 0


def _deprecated_seed_count(text: str) -> int:
    """``synth transfer --seeds N``: the old name of ``--num-seeds`` (a count, where ``study --seeds`` is a list)."""
    import sys

    print("spatialvit synth transfer: --seeds N is deprecated, use --num-seeds N (a count)", file=sys.stderr)
    return positive_int(text)
