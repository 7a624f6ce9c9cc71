"""The study's report: every number as mean ± 95 % CI over seeds, the paired differences, the claims with their
verdicts, the plots; and the sweep rows averaged over seeds for the sensitivity plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .._text import plural
from ..report.document import Report
from ..report.inference import MAX_SEEDS
from ..report.stats import format_ci, mean_ci
from ..report.tables import Row
from .adaptive import Ledger, model_costs, still_needed
from .claims import CONCLUSIVE, HOLDS, NO_EFFECT, REFUTED, SEQUENTIAL_RULE, VERDICT_RULE
from .config import StudyConfig
from .provenance import budgets

# The comparison table's columns in the report: "column: heading" (3 decimals; attention distance 2, img/s 0).
SHOWN = dict(
    line.split(": ")
    for line in """\
test_acc1: test top-1
clean_acc1: clean top-1 (swept images)
ssi_shuffle: shuffle SSI
ssi_mask: mask SSI
ssi_at_chance: SSI at chance
flip_shuffle: shuffle flips
flip_mask: mask flips
attn_dist_px: attention distance (px)
prior_dist_px: prior distance (px)
rate_spread: rate spread
assoc_mass: assoc. mass
assoc_auc: assoc. AUC
train_img_s: train img/s
infer_img_s: infer img/s""".splitlines()
)
# Shown in the report's second comparison table (with params, epochs, flips and cost), the rest in the first.
ATTENTION_COLUMNS = ("attn_dist_px", "prior_dist_px", "rate_spread", "assoc_mass", "assoc_auc", "train_img_s",
                     "infer_img_s")  # fmt: skip
DIGITS = {"attn_dist_px": 2, "prior_dist_px": 2, "train_img_s": 0, "infer_img_s": 0}
SETTING = ("model", "kind", "grid", "blocks", "ratio", "fill", "aligned")


def sweep_means(rows: Sequence[Row]) -> list[Row]:
    """Sweep rows of several seeds (each with a ``seed``) -> one row per (model, setting): ``acc1`` and
    ``sensitivity`` averaged over seeds, with ``acc1_ci``/``sensitivity_ci`` the 95 % interval's half-width (``None``
    for one seed) and ``seeds``."""
    groups: dict[tuple, list[Row]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in SETTING), []).append(r)
    out = []
    for key, group in groups.items():
        row: Row = dict(zip(SETTING, key)) | {"seeds": len(group)}
        for col in ("acc1", "sensitivity"):
            ci = mean_ci([r[col] for r in group])
            row |= {col: ci.mean, f"{col}_ci": None if ci.single_seed else ci.half_width}
        out.append(row)
    return out


def shown_comparison(comparison: Sequence[Row]) -> list[Row]:
    """The comparison as the report shows it: ``mean ± CI`` strings (``(1 seed)`` without an interval)."""
    rows = []
    for r in comparison:
        row: Row = {"model": r["model"], "params": r.get("params"), "epochs": r.get("epochs"), "seeds": r.get("seeds")}
        for col, heading in SHOWN.items():
            row[heading] = format_ci(r.get(col), r.get(f"{col}_ci"), DIGITS.get(col, 3))
        for col in [c for c in r if c.startswith(("shuffle_drop_", "mask_drop_")) and not c.endswith(("_ci", "_n"))]:
            kind, _, grid = col.split("_", 2)
            row[f"{kind} drop {grid}"] = format_ci(r.get(col), r.get(f"{col}_ci"), 3)
        rows.append(row)
    return rows


def _differences(diffs: Sequence[Row]) -> list[Row]:
    cols = [c[: -len("_diff")] for c in diffs[0] if c.endswith("_diff")] if diffs else []
    return [
        {"model − reference": f"{d['model']} − {d['reference']}"}
        | {c: format_ci(d[f"{c}_diff"], d[f"{c}_diff_ci"], 3) for c in cols}
        for d in diffs
    ]


def shown_claims(claims: Sequence[Row], sequential: bool = False) -> list[Row]:
    """The verdicts: effect, interval, p-values, verdict and, for an open claim, the seeds 80 % power needs (with
    ``sequential``: the seeds at which the observed effect would resolve it)."""
    need = "seeds to resolve at the observed effect" if sequential else "seeds for 80 % power"

    def interval(c: Row) -> str:
        return "" if c["ci_low"] is None else f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"

    def p(value: float | None) -> str:
        return "" if value is None else f"{value:.2g}" if value < 0.001 else f"{value:.3f}"

    return [
        {"claim": f"({c['id']}) {c['claim']}", "kind": c["kind"], "δ": f"{c['delta']:g}"}
        | {"effect": "" if c["effect"] is None else f"{c['effect']:+.3f}", "95 % CI": interval(c), "seeds": c["n"]}
        | {"p": p(c["p"]), "Holm p": p(c["p_holm"]), "verdict": c["verdict"], need: _need(c)}
        for c in claims
    ]


def _need(c: Row) -> str:
    """``"7 (holds)"``, ``"12 (no effect as large as δ)"``, ``"> 1000"``; ``""`` for a conclusive claim."""
    if c["p_holm"] is None or c["verdict"] in CONCLUSIVE:
        return ""
    parts = []
    if c["seeds_effect"] is not None:
        direction = c["leaning"] if c["leaning"] != NO_EFFECT else (HOLDS if c["effect"] > 0 else REFUTED)
        parts.append(f"{c['seeds_effect']} ({direction})")
    if c["seeds_delta"] is not None:
        parts.append(f"{c['seeds_delta']} ({NO_EFFECT})")
    return "; ".join(parts) or f"> {MAX_SEEDS}"


def _registry(claims: Sequence[Row]) -> list[Row]:
    """What each claim is: the paper, its words, how it is measured (``_G``: at each claim grid) and the margin."""
    seen: dict[str, Row] = {}
    for c in claims:
        base, _, grid = c["id"].partition("@")
        measure = c["measure"].replace(f"_{grid}", "_G") if grid else c["measure"]
        seen.setdefault(base, {"claim": base, "paper": c["source"], "quote": f"“{c['quote']}”", "measure": measure,
                               "kind": c["kind"], "δ": f"{c['delta']:g}: {c['delta_reason']}"})  # fmt: skip
    return list(seen.values())


def build_report(
    config: StudyConfig,
    comparison: list[Row],
    diffs: list[Row],
    claims: list[Row],
    invalid: dict[str, str],
    distances: list[Row],
    associations: list[Row],
    files: dict[str, Path],
) -> Report:
    """report.md / report.html of a study."""
    rep = Report(f"spatialvit study: {config.data}")
    rep.paragraph(_setup(config))
    rep.heading("Comparison")
    shown = shown_comparison(comparison)
    attention = ("params", "epochs", "shuffle flips", "mask flips", *(SHOWN[c] for c in ATTENTION_COLUMNS))
    rep.table([{k: v for k, v in r.items() if k not in attention} for r in shown])
    rep.table([{k: v for k, v in r.items() if k == "model" or k in attention} for r in shown])
    rep.paragraph(
        "test top-1: accuracy on the whole test split at the end of training (the run's own evaluation); clean "
        "top-1 (swept images): on the test images the sweep used (all of them unless sensitivity.limit is set). "
        "SSI (Spatial Sensitivity Index) = 1 − perturbed / clean accuracy, averaged over "
        "the shuffle (or mask) settings: **higher means more sensitive to the layout of the image** (0: the layout "
        "is ignored). A model whose predictions fall to chance under every perturbation scores 'SSI at chance' = "
        "1 − (1/classes) / clean accuracy — the top of the scale for that model, not 1. flips: the share of "
        "predictions that change. shuffle/mask drop G: the chance-normalised drop (clean − perturbed) / (clean − "
        "chance) at grid G (1 = down to chance). attention distance: mean over layers, heads, queries and "
        f"{config.probes.images} test images (lower = more local); prior distance: the same for the architecture at "
        "initialisation with content-free logits (its bias alone; uniform attention: the plain ViT's). rate spread: "
        "how much the decay rates vary across images (sd / mean; fixed decay: 0). assoc.: patch association of the "
        "positional "
        "layers (see Patch association). img/s depend on the machine and its load; every other column is fixed by "
        "the seeds."
    )
    if claims:
        rep.heading("Claims")
        rep.paragraph(_coverage(config))
        rep.table(shown_claims(claims, config.until_resolved))
        if invalid:
            rep.paragraph("**Not valid — models not clearly above chance:** " + "; ".join(invalid.values()) + ".")
        rep.paragraph(SEQUENTIAL_RULE + " " + SEQUENTIAL_NOTE if config.until_resolved else VERDICT_RULE + " " +
                      POWER_NOTE)  # fmt: skip
        rep.table(_registry(claims))
    if diffs:
        rep.heading("Differences (exploratory)")
        rep.table(_differences(diffs))
        rep.paragraph(
            "Exploratory: each model minus the reference (the plain ViT, the CNN), paired by seed: the mean of the "
            "per-seed differences ± the half-width of their 95 % Student-t interval, each interval on its own — no "
            "correction for the many intervals here, and none of them is a tested claim. An interval that contains "
            "0 does not resolve the difference at this budget."
        )
    _figures(rep, config, distances, associations, files)
    rep.paragraph(
        "Files: comparison.* (per model, mean and CI over seeds; columns col, col_ci, col_n), comparison_seeds.* "
        "(per model and seed), differences.*, claims.*, sweep.* and summary.* (every sensitivity setting, per "
        "seed), attention_distance.* (per seed, layer and head), association.* (per seed and positional layer), "
        "runs/<model>/seed<k>/ (checkpoints, metrics, config)."
    )
    return rep


SEQUENTIAL_NOTE = (
    "Seeds to resolve: the total seeds at which the sequential rule would reach the strictest Holm level (α divided "
    "by the number of claims tested) if the observed mean and per-seed standard deviation stayed as they are — a "
    "rough guide (a standard deviation from a few seeds is itself uncertain)."
)
POWER_NOTE = (
    "Seeds for 80 % power: at the observed mean and per-seed standard deviation, the seeds a one-sided t-test at "
    "the strictest Holm level (α/2 divided by the number of claims tested) needs to reach the conclusion the "
    "observed effect points to, and where the effect lies inside ±δ the seeds for the margin conclusion (two "
    "one-sided tests, each side at power √0.8). A standard deviation from a few seeds is itself uncertain (from 3 "
    "seeds its 95 % interval spans about 0.5 to 6 times the estimate), so these are rough guides, not promises."
)


def _coverage(config: StudyConfig) -> str:
    """What the intervals cover: which sources of variation change with the seed, and what stays fixed."""
    varies = ["weight initialisation", "data order", "augmentation and dropout draws", "the sweep's perturbations"]
    if config.train.train_limit is not None:
        varies.append(f"the {config.train.train_limit:,}-image training subset (models of one seed share it)")
    test = "the sweep's images" + ("" if config.sensitivity.limit is None else
                                   f" (the first {config.sensitivity.limit:,} test images)")  # fmt: skip
    return (
        f"Sources of variation between seeds: {', '.join(varies)}. The intervals cover these, for a fixed test set: "
        f"accuracy claims use test_acc1 (the whole test split), sensitivity claims {test}. The sensitivity claims "
        f"are tested per claim grid ({', '.join(config.claim_grid_labels)}, declared in the configuration before "
        "the run) on the chance-normalised drop (clean − perturbed) / (clean − chance): 0 = unaffected, 1 = down to "
        "chance for every model (masks: mean over the mask ratios). The averaged SSI columns are descriptive."
    )


def _setup(config: StudyConfig) -> str:
    s, n = config.sensitivity, len(config.seeds)
    seeds = (
        f"{n} seeds ({', '.join(map(str, config.seeds))}): every number is the mean over seeds ± the half-width of "
        "its 95 % Student-t confidence interval (n − 1 degrees of freedom)"
        if n > 1
        else f"one seed ({config.seeds[0]}): no confidence interval can be given, and a difference between models is "
        "an anecdote, not a finding"
    )
    t = config.train
    limit = "every training image" if t.train_limit is None else f"train_limit {t.train_limit:,} training images"
    shared = (
        f"Shared `train` settings: {plural(t.epochs, 'epoch')}, {limit}, batch {t.batch_size}, lr {t.lr:g}, warm-up "
        f"{t.warmup_epochs:g} epochs. "
        if set(config.models) - set(config.checkpoints)
        else ""
    )
    runs = " ".join(budgets(config))
    return (
        f"Data `{config.data}` (img_size {config.img_size or 'native'}); {seeds}. {shared}Training budget of every "
        f"run, read from its checkpoint: {runs} Sensitivity: block shuffles on grids "
        f"{s.shuffle_grids}, block masks on grids {s.mask_grids or s.shuffle_grids} at ratios {s.mask_ratios} "
        f"({s.mask_fill} fill), "
        f"{s.repeats} draws each, on the test split{'' if s.limit is None else f' (first {s.limit} images)'}. The "
        "full configuration is in study_config.yaml."
    )


def _figures(
    rep: Report, config: StudyConfig, distances: list[Row], associations: list[Row], files: dict[str, Path]
) -> None:
    error = "95 % CI over seeds, clipped to the possible range" if len(config.seeds) > 1 else "none (one seed)"
    rep.heading("Sensitivity")
    rep.image(
        files["sensitivity_png"], f"Test top-1 under block shuffles and masks; error bars: {error}; dotted: chance"
    )
    if distances:
        rep.heading("Attention")
        layers: dict[tuple[str, int], list[float]] = {}
        for r in distances:
            layers.setdefault((r["model"], r["layer"]), []).append(r["distance_px"])
        rep.table(
            [
                {"model": m, "layer": la, "mean_px": sum(v) / len(v), "min_head_px": min(v), "max_head_px": max(v)}
                for (m, la), v in layers.items()
            ]
        )
        rep.paragraph("Per layer: the mean over heads and seeds, and the extreme heads (over seeds).")
        rep.image(files["attention_distance_png"], f"Mean attention distance per layer (dots: heads; bars: {error})")
        rep.image(files["attention_maps_png"], "Attention of the outlined query patch per layer (first seed)")
    if associations:
        rep.heading("Patch association")
        rep.table(associations)
        rep.paragraph(_association_text(config, associations))


def _association_text(config: StudyConfig, associations: list[Row]) -> str:
    chance = associations[0]["chance_mass"]
    return (
        "Each positional layer's attention among grid tokens (heads and "
        f"{config.probes.images} test images averaged) against a reference partition: "
        f"{associations[0]['reference']}. mass: mean attention a query puts on its own group (self included; "
        f"uniform attention gives chance_mass = {chance:.4f}, 1 = all within the group); auc: probability that a "
        "same-group pair outranks a different-group pair (0.5 = chance); top_c: share of each query's C largest "
        "weights inside its group; ari: adjusted Rand index of the partition recovered by spectral clustering "
        "(0 = chance). On natural images there is no hidden ground-truth partition: against local blocks these "
        "numbers measure how local the learned positional attention is. Only on synthetic data, where the "
        "task's true groups are the reference, do they measure whether the true association was learned."
    )


def cost_section(
    rep: Report,
    *,
    config: StudyConfig,
    costs: Sequence[Row],
    ledger: Ledger | None,
    claims: Sequence[Row],
    phases: dict[str, float],
) -> None:
    """Where the time went (the study's phases; per model: training, sweep, probes, per run) and, for an adaptive
    study, its rounds, the seeds and looks of every claim and what each open claim would still cost."""
    per_model = model_costs(costs)
    rep.heading("Where the time went")
    total = sum(phases.values())
    rep.table([{"phase": k, "minutes": v / 60, "share": f"{v / total:.0%}" if total else ""} for k, v in
               phases.items()], digits=1)  # fmt: skip
    rep.paragraph(
        "Wall time of this session of the study: data (reading and resizing the data once, shared by every run), "
        "training (the runs trained or reused here, with their own final evaluation), analysis (sweeps and "
        "probes). Writing the tables, plots and report comes after and takes seconds."
    )
    rows = []
    for model, mine in ((m, [r for r in costs if r["model"] == m]) for m in per_model):
        train, sweep, probes = (sum(r[k] or 0.0 for r in mine) for k in ("train_s", "sweep_s", "probes_s"))
        total = train + sweep + probes
        speed = [r["train_img_s"] for r in mine if r.get("train_img_s")]
        rows.append({"model": model, "runs": len(mine), "train img/s": sum(speed) / len(speed) if speed else None,
                     "train s/run": train / len(mine),
                     "sweep s/run": sweep / len(mine), "probes s/run": probes / len(mine),
                     "training share": f"{train / total:.0%}" if total else ""})  # fmt: skip
    rep.table(rows, digits=1)
    rep.paragraph(
        "Measured on this machine under its load at the time (cost.csv has every run): training is the sum of the "
        "run's epoch times (its own evaluation included); sweep and probes are this study's analysis of the run. "
        f"Runs train {config.workers} at a time on a CPU (workers); the analysis runs one run after another."
    )
    if ledger is None:
        return
    rep.heading("Adaptive seeds")
    budget = "no budget" if config.budget_s is None else f"a budget of {config.budget} ({config.budget_s:.0f} s)"
    rep.paragraph(
        f"Pilot: seeds {', '.join(map(str, config.seeds))}; then {plural(len(ledger.rounds) - 1, 'round')} of added "
        f"seeds, at most {config.max_seeds} per model, with {budget}; wall time spent: {ledger.spent_s / 60:.1f} min. "
        f"Stopped: {ledger.stopped or 'not yet (interrupted: continue with --resume)'}."
    )
    rep.table([{"round": k, "runs": ", ".join(f"{m} seed {s}" for m, s in r.jobs) if k else f"{len(r.jobs)} (pilot)",
                "for claims": ", ".join(r.claims), "minutes": r.seconds / 60}
               for k, r in enumerate(ledger.rounds)], digits=1)  # fmt: skip
    shown = []
    for c in claims:
        more, seconds = still_needed(c, per_model) if c["verdict"] not in CONCLUSIVE else (None, None)
        shown.append({"claim": c["id"], "seeds": c["n"], "looks": ledger.looks(c["id"]), "verdict": c["verdict"],
                      "more seeds": "" if c["verdict"] in CONCLUSIVE else "not reachable" if more is None else more,
                      "more minutes (this machine)": "" if seconds is None else seconds / 60})  # fmt: skip
    rep.table(shown, digits=0)
    rep.paragraph(
        "seeds: the claim's paired seeds; looks: how many times its verdict was read with new seeds (the pilot is "
        "the first); more seeds / minutes: for an open claim, what it would still need at its observed effect, "
        "timed with this machine's measured time of a seed of its models (training and analysis)."
    )
