"""``spatialvit synth``: synthetic spatially structured data — train positional attention, measure patch
association, transfer to a new feature on the same groups."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import asdict
from pathlib import Path
from typing import TypeVar

from ..config import add_arguments, from_args, given
from ..synth.config import (
    SIMPLIFIED,
    AssociateConfig,
    FitSettings,
    SynthSetup,
    SynthTrainConfig,
    SynthTransferConfig,
)
from .common import command, config_file, positive_int

S = TypeVar("S", bound=SynthSetup)
# What each action writes into --out.
TRAIN_FILES = ("history.*", "summary.*", "attention.png", "association.png", "model.pt")
ASSOCIATE_FILES = ("association.*", "attention.png")
TRANSFER_FILES = ("transfer_runs.*", "transfer.*", "claims.*")


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
    _setup_args(t, SynthTrainConfig)
    a = command(ops, "associate", ASSOCIATE_TEXT, ASSOCIATE_EXAMPLES, run_associate)
    a.add_argument("model", metavar="MODEL_PT", help=AssociateConfig.describe()["model"][1])
    config_file(a, "`synth associate`")
    add_arguments(a, AssociateConfig, skip=("model",))
    r = command(ops, "transfer", TRANSFER_TEXT, TRANSFER_EXAMPLES, run_transfer)
    _setup_args(r, SynthTransferConfig)
    r.add_argument(
        "--seeds", type=_deprecated_seed_count, dest="num_seeds", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def _setup_args(p: argparse.ArgumentParser, cls: type[SynthSetup]) -> None:
    """The flags of a synth config: its own keys, then the optimisation group (the keys of ``fit``)."""
    config_file(p, f"`{p.prog}` (a preset key picks the preset the file and the flags start from)")
    add_arguments(p, cls)
    small = cls.for_preset("small")
    g = p.add_argument_group(
        f"optimisation (keys of fit:; defaults of preset image; small: steps {small.fit.steps}, attn-lr "
        f"{small.fit.attn_lr}, max-step none)"
    )
    add_arguments(g, FitSettings, skip=("train_attention",), defaults=cls().fit, dest_prefix="fit.")


def _setup(args: argparse.Namespace, cls: type[S]) -> S:
    """The config of a synth action from its flags and --config (:meth:`SynthSetup.from_sources`)."""
    flags = given(args, cls)
    flags["fit"] = given(args, FitSettings, dest_prefix="fit.")
    return cls.from_sources(flags, args.config)


def run_train(args: argparse.Namespace) -> int:
    from ..data.synthetic import SyntheticConfig, sample_synthetic, synthetic_info
    from ..report.tables import markdown_table, save_table
    from ..runtime import claim_outputs
    from ..synth.experiments import TEST_SEED_OFFSET, bayes_accuracy, global_count_accuracy, train_association
    from ..synth.plots import plot_association_history, plot_attention_groups
    from ..train.checkpoint import save_checkpoint

    config = _setup(args, SynthTrainConfig)
    cfg = SyntheticConfig.from_string(config.data_spec())
    out = Path(config.out)
    claim_outputs(out, TRAIN_FILES, overwrite=config.overwrite)
    kwargs = config.model_kwargs()
    res = train_association(
        cfg,
        n_train=config.n_train,
        n_test=config.n_test,
        settings=config.fit,
        model_kwargs=kwargs,
        seed=config.seed,
        cluster=config.cluster,
        progress=config.progress,
    )
    test = sample_synthetic(cfg, config.n_test, seed=config.seed + TEST_SEED_OFFSET)  # the run's own test set
    first, last = res.history[0], res.final
    summary = [{"when": "init", **first}, {"when": "final", **last}]
    save_table(res.history, out, "history")
    save_table(summary, out, "summary")
    plot_attention_groups(
        res.model.attention().detach(),
        res.groups,
        cfg.grid,
        out / "attention.png",
        f"learned A (mass {last['mass']:.3f}, test acc {last['test_acc']:.3f})",
    )
    plot_association_history(res.history, out / "association.png")
    save_checkpoint(
        out / "model.pt",
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
        f"references on the {config.n_test} test samples: Bayes-optimal (knows groups and features) "
        f"{bayes_accuracy(cfg, test):.4f}; structure-blind sum of <w*, X_j> over all patches "
        f"{global_count_accuracy(cfg, test):.4f}"
    )
    print(f"wrote {out}/history.*, summary.*, attention.png, association.png, model.pt")
    return 0


def run_associate(args: argparse.Namespace) -> int:
    from ..report.tables import markdown_table, save_table
    from ..runtime import claim_outputs
    from ..train.checkpoint import load_checkpoint

    config = from_args(args, AssociateConfig, config_file=args.config)
    out = Path(config.out)
    claim_outputs(out, ASSOCIATE_FILES, overwrite=config.overwrite)
    ckpt = load_checkpoint(config.model)
    rows = _simplified_association(ckpt, config) if ckpt["model_name"] == SIMPLIFIED else _vit_association(config)
    save_table(rows, out, "association")
    print(markdown_table(rows))
    print(f"wrote {out}/association.*, attention.png")
    return 0


def _simplified_association(ckpt: dict, config: AssociateConfig) -> list[dict]:
    from ..data.synthetic import SyntheticConfig, make_partition
    from ..probes.association import association_report
    from ..synth.model import SimplifiedViT
    from ..synth.plots import plot_attention_groups

    cfg = SyntheticConfig(**ckpt["synthetic"])
    model = SimplifiedViT(**ckpt["model_kwargs"])
    model.load_state_dict(ckpt["model"])
    A, groups = model.attention().detach(), make_partition(cfg)
    plot_attention_groups(A, groups, cfg.grid, Path(config.out) / "attention.png", "simplified model")
    return [{"model": SIMPLIFIED, **association_report(A, groups, config.cluster)}]


def _vit_association(config: AssociateConfig) -> list[dict]:
    from ..data import Normalize
    from ..data.synthetic import SyntheticConfig, load_synthetic, make_partition, split_spec
    from ..synth.experiments import vit_association
    from ..synth.plots import plot_attention_groups
    from ..train.checkpoint import model_from_checkpoint

    if config.data is None:
        raise ValueError("a ViT checkpoint needs --data with the synthetic options it was trained on")
    cfg = SyntheticConfig.from_string(split_spec(config.data)[0])
    model, info, ckpt = model_from_checkpoint(config.model)
    images = load_synthetic(config.data, "test", None, n=config.images).images
    images = Normalize(info.mean, info.std)(images)  # the normalisation the model was trained with
    vit_rows, maps = vit_association(model, images, cfg, config.per_head, config.cluster)
    best = max(maps, key=lambda b: next(r["mass"] for r in vit_rows if r["block"] == b and r["head"] == "mean"))
    plot_attention_groups(
        maps[best],
        make_partition(cfg),
        cfg.grid,
        Path(config.out) / "attention.png",
        f"{ckpt['model_name']} block {best} (highest within-group mass)",
    )
    return [{"model": ckpt["model_name"], **r} for r in vit_rows]


def run_transfer(args: argparse.Namespace) -> int:
    from ..data.synthetic import SyntheticConfig
    from ..report.tables import markdown_table, save_table
    from ..runtime import claim_outputs
    from ..study.claims import VERDICT_RULE
    from ..study.report import shown_claims
    from ..synth.experiments import summarise_transfer, transfer_claims, transfer_experiment
    from ..synth.plots import plot_transfer

    config = _setup(args, SynthTransferConfig)
    cfg = SyntheticConfig.from_string(config.data_spec())
    out = Path(config.out)
    claim_outputs(out, TRANSFER_FILES, overwrite=config.overwrite)
    rows, pre = transfer_experiment(
        cfg,
        ns=config.ns,
        arms=config.arms,
        pretrain_n=config.n_train,
        pretrain=config.fit,
        finetune=dataclasses.replace(config.fit, steps=config.finetune_steps),
        n_test=config.n_test,
        seeds=range(config.seed, config.seed + config.num_seeds),
        model_kwargs=config.model_kwargs(),
        progress=config.progress,
    )
    summary = summarise_transfer(rows)
    claims = transfer_claims(rows)
    save_table(rows, out, "transfer_runs")
    save_table(summary, out, "transfer")
    if claims:
        save_table(claims, out, "claims")
    plot_transfer(summary, out / "transfer.png")
    print(f"pre-training on task 1: test acc {pre.final['test_acc']:.4f}, within-group mass {pre.final['mass']:.3f}")
    print(markdown_table(summary))
    if claims:
        print("\n" + markdown_table(shown_claims(claims)) + "\n\n" + VERDICT_RULE)
    print(f"wrote {out}/transfer_runs.*, transfer.*, {'claims.*, ' if claims else ''}transfer.png")
    return 0


def _deprecated_seed_count(text: str) -> int:
    """``synth transfer --seeds N``: the old name of ``--num-seeds`` (a count, where ``study --seeds`` is a list)."""
    import sys

    print("spatialvit synth transfer: --seeds N is deprecated, use --num-seeds N (a count)", file=sys.stderr)
    return positive_int(text)
