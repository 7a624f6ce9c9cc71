"""The papers' claims as data, and their verdicts.

Each :class:`Claim` names its paper, a short verbatim quote, the measure (a per-seed column of one model minus a
column of a reference model, paired by seed, or the column alone against 0), its kind — superiority (X > Y),
non-inferiority (X ≥ Y − δ) or equivalence (|X − Y| < δ) — and its margin δ with the reason for it. Verdicts follow
:data:`VERDICT_RULE`: every possible conclusion of a claim is a one-sided Student-t test at α/2 over the per-seed
values; the claim's p-value is that of the conclusion it leans to, doubled; Holm's adjustment over the claims tested
together controls the family-wise error; a claim is *not resolved at this budget* unless its adjusted p is ≤ α.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
from scipy.stats import t

from ..catalog import roles
from ..report.inference import (
    MAX_SEEDS,
    av_p_greater,
    av_p_less,
    av_tost,
    holm,
    p_greater,
    p_less,
    prefix_samples,
    seeds_for_power,
    tost,
)
from ..report.stats import Interval, by_seed, mean_ci
from ..report.tables import Row

ALPHA = 0.05  # family-wise error rate of the verdicts of one study
GATE = 0.2  # a model's accuracy must be clearly above chance + GATE x (1 - chance) for its claims to be tested
ROLES = roles()

HOLDS = "holds"
REFUTED = "refuted"
NO_EFFECT = "no effect as large as δ"
NOT_RESOLVED = "not resolved at this budget"
SINGLE_SEED = "not resolved (single seed)"
NOT_MEASURED = "not measured"
NOT_VALID = "not valid: model not trained"
CONCLUSIVE = (HOLDS, REFUTED, NO_EFFECT)

Kind = Literal["superiority", "non-inferiority", "equivalence"]
Rule = Literal["fixed", "sequential"]
RULES = ("fixed", "sequential")
KINDS: dict[str, str] = {
    "superiority": "X − Y > 0",
    "non-inferiority": "X − Y > −δ",
    "equivalence": "|X − Y| < δ",
}

VERDICT_RULE = (
    "Each claim is measured per seed as X − Y (two models trained with the same seed, or one model's column against "
    "0) and tested over the seeds with Student-t statistics. A claim can end in a few conclusions, each a one-sided "
    "test at α/2 — equivalently, the two-sided (1 − α) confidence interval lies entirely in the conclusion's region. "
    f"Superiority (X > Y): interval above 0 → {HOLDS}; below 0 → {REFUTED}; inside ±δ → {NO_EFFECT} (two one-sided "
    f"tests). Non-inferiority (X ≥ Y − δ): interval above −δ → {HOLDS}; below −δ → {REFUTED}. Equivalence "
    f"(|X − Y| < δ): interval inside ±δ → {HOLDS} (two one-sided tests); entirely above δ or below −δ → {REFUTED}. "
    "A claim's p-value is twice the one-sided p of the conclusion it leans to (so each of the at most two "
    "conclusions that can be wrong at once gets α/2); Holm's step-down adjustment over the claims of the study "
    f"controls the family-wise error at α = {ALPHA:g}: a claim whose adjusted p is ≤ α takes that conclusion, any "
    f"other is {NOT_RESOLVED} — a difference that is not significant is not evidence of no difference; only the "
    f"margin test gives {NO_EFFECT}. With one seed there is no test ({SINGLE_SEED}); a claim whose column was not "
    f"measured is {NOT_MEASURED}; a claim on a model whose test accuracy is not clearly above chance — the lower end "
    f"of its 95 % interval over seeds at most {GATE:g} of the way from chance to 1 (the floor: {0.1 + 0.9 * GATE:.2f} "
    "for 10 classes), "
    f"or not finite — is {NOT_VALID}. These three are left out of Holm's family."
)

SEQUENTIAL_RULE = (
    "Adaptive study (until_resolved): seeds were added while looking at the verdicts, so the verdicts use a "
    "sequential rule whose error rates hold however the looks stopped. Each claim's per-seed values X − Y are read "
    "in seed order; at every look k = 2..n the scale-invariant normal-mixture e-value of Lai's sequential t-test "
    "(Lai 1976; Wang & Ramdas 2025) is computed at each conclusion's boundary, with the conclusions' regions as in "
    "the fixed rule (superiority: above 0 → holds, below 0 → refuted, inside ±δ → no effect as large as δ; "
    "non-inferiority: above / below −δ; equivalence: inside ±δ → holds, beyond → refuted). A conclusion's "
    "anytime-valid p-value is 1 / the e-value where the mean lies in its region (1 elsewhere), minimised over the "
    "looks; the claim's p is the smallest over its conclusions (all share one e-value, so no doubling). Holm's "
    f"step-down adjustment over the study's claims controls the family-wise error at α = {ALPHA:g}; a claim whose "
    f"adjusted p is ≤ α takes that conclusion, any other is {NOT_RESOLVED}. The 95 % CI shown is the fixed "
    "Student-t interval of the same values, for reading only. Validity gate and exclusions as in the fixed rule."
)

# Where a claim is tested: the study's per-seed columns (models by role) or the synthetic transfer runs.
XU = "Xu, ACML 2025"
JELASSI = "Jelassi et al., NeurIPS 2022"
SDT = "Mao et al. (SDT), AAAI 2026"
RMT = "Fan et al. (RMT), CVPR 2024"
ACCURACY_DELTA = 0.01
ACCURACY_REASON = (
    "one accuracy point: the smallest gap the papers' tables present as an improvement, and 2-3 times the "
    "binomial standard error of a 10,000-image test accuracy"
)
SENSITIVITY_DELTA = 0.05
SENSITIVITY_REASON = (
    "5 % of the way from clean accuracy to chance (about 4 points of perturbed accuracy at 85 % clean): a smaller "
    "gap is no 'significant sensitivity gap'"
)
DISTANCE_DELTA = 1.0
DISTANCE_REASON = "1 px on 32-px images: a quarter of a 4-px patch, 6 % of uniform attention's distance"
SPREAD_DELTA = 0.05
SPREAD_REASON = "rates that vary by under 5 % of their size from image to image are fixed in effect"


@dataclass(frozen=True)
class Claim:
    """``measure(model) − measure(reference)`` (or ``reference_measure`` of the reference; against 0 when
    ``reference`` is ``None``) is tested as ``kind`` with margin ``delta``. Models are roles; ``per_grid`` claims are
    tested once per declared sensitivity grid (``measure`` gets the grid appended: ``shuffle_drop`` →
    ``shuffle_drop_8x8``)."""

    id: str
    source: str
    quote: str
    text: str
    measure: str
    model: str
    reference: str | None
    kind: Kind
    delta: float
    delta_reason: str
    reference_measure: str | None = None
    per_grid: bool = False

    def at_grid(self, grid: str) -> Claim:
        """This claim at one sensitivity grid (``"8x8"``)."""
        return replace(self, id=f"{self.id}@{grid}", text=f"{self.text} ({grid} blocks)",
                       measure=f"{self.measure}_{grid}", per_grid=False)  # fmt: skip


XU_GAP = (
    "a significant sensitivity gap to random block shuffling and masking between VT and convolutional neural network "
    "(CNN)"
)
XU_CONV = "significantly increases VT's sensitivity to spatial structure without sacrificing performance"

# The margins of the claims on each kind of measure.
_SENSITIVITY = dict(kind="superiority", delta=SENSITIVITY_DELTA, delta_reason=SENSITIVITY_REASON, per_grid=True)
_ACCURACY = dict(measure="test_acc1", delta=ACCURACY_DELTA, delta_reason=ACCURACY_REASON)
_LOCALITY = dict(
    measure="prior_dist_px",
    kind="superiority",
    delta=DISTANCE_DELTA,
    delta_reason=DISTANCE_REASON,
    reference_measure="attn_dist_px",
)
_SDT_QUOTE = "consistent improvements over strong baselines"
CLAIMS = (
    Claim(id="a", source=XU, quote=XU_GAP, text="CNNs drop further than ViTs under block shuffles",
          measure="shuffle_drop", model="cnn", reference="plain", **_SENSITIVITY),
    Claim(id="b", source=XU, quote=XU_GAP, text="CNNs drop further than ViTs under block masks",
          measure="mask_drop", model="cnn", reference="plain", **_SENSITIVITY),
    Claim(id="c1", source=XU, quote=XU_CONV, text="Conv Q/K/V makes a ViT drop further under block shuffles",
          measure="shuffle_drop", model="conv_qkv", reference="plain", **_SENSITIVITY),
    Claim(id="c2", source=XU, quote=XU_CONV, text="Conv Q/K/V makes a ViT drop further under block masks",
          measure="mask_drop", model="conv_qkv", reference="plain", **_SENSITIVITY),
    Claim(id="d", source=XU, quote=XU_CONV, text="Conv Q/K/V costs no test accuracy", model="conv_qkv",
          reference="plain", kind="non-inferiority", **_ACCURACY),
    Claim(id="e", source=JELASSI, quote="a ViT with positional attention performs similarly to the original one",
          text="Positional attention is as accurate as plain attention", model="positional", reference="plain",
          kind="equivalence", **_ACCURACY),
    Claim(id="f1", source=SDT, quote=_SDT_QUOTE, text="SDT is more accurate than fixed decay (RMT)", model="sdt",
          reference="decay", kind="superiority", **_ACCURACY),
    Claim(id="f2", source=SDT, quote=_SDT_QUOTE, text="SDT is more accurate than plain attention", model="sdt",
          reference="plain", kind="superiority", **_ACCURACY),
    Claim(id="f3", source=SDT, quote="dynamic, data-dependent decay",
          text="SDT's decay rates vary with the image (fixed decay: 0)", measure="rate_spread", model="sdt",
          reference=None, kind="superiority", delta=SPREAD_DELTA, delta_reason=SPREAD_REASON),
    Claim(id="g1", source=RMT,
          quote="a spatial decay matrix based on the Manhattan distance to introduce the explicit spatial prior",
          text="Trained fixed-decay attention is more local than its decay prior alone", model="decay",
          reference="decay", **_LOCALITY),
    Claim(id="g2", source=SDT, quote="dynamic, data-dependent decay",
          text="Trained SDT attention is more local than its decay prior at initialisation", model="sdt",
          reference="sdt", **_LOCALITY),
    Claim(id="h", source=RMT, quote="RMT exhibits exceptional performance across various vision tasks",
          text="Fixed decay is more accurate than plain attention", model="decay", reference="plain",
          kind="superiority", **_ACCURACY),
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    """The outcome of one claim's tests: the per-seed sample, the conclusion it leans to and its doubled p-value."""

    sample: Interval
    leaning: str
    p: float


def conclusions(kind: Kind, delta: float, rule: Rule = "fixed") -> dict[str, Callable[[Interval], Any]]:
    """The one-sided p-value of each conclusion a claim of ``kind`` can reach (``refuted`` of an equivalence claim is
    two conclusions, one per side); each takes an :class:`Interval` whose mean and sd may be arrays. ``rule``
    ``"sequential"``: the anytime-valid p-values of one look (:func:`~spatialvit.report.inference.av_p_greater`)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {list(RULES)}, got {rule!r}")
    greater, less, two = (av_p_greater, av_p_less, av_tost) if rule == "sequential" else (p_greater, p_less, tost)
    if kind == "superiority":
        return {HOLDS: lambda s: greater(s, 0.0), REFUTED: lambda s: less(s, 0.0),
                NO_EFFECT: lambda s: two(s, -delta, delta)}  # fmt: skip
    if kind == "non-inferiority":
        return {HOLDS: lambda s: greater(s, -delta), REFUTED: lambda s: less(s, -delta)}
    if kind == "equivalence":
        return {HOLDS: lambda s: two(s, -delta, delta),
                REFUTED: lambda s: np.minimum(greater(s, delta), less(s, -delta))}  # fmt: skip
    raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def claim_outcomes(sample: Interval, kind: Kind, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """``(leaning, p)`` for samples whose mean and sd are arrays (one entry per study; used by the simulations):
    the conclusion each leans to and its p-value, twice the smallest one-sided p of :func:`conclusions` (at most 1)."""
    tests = conclusions(kind, delta)
    ps = np.stack([np.broadcast_to(f(sample), np.shape(sample.mean)) for f in tests.values()])
    best = ps.argmin(0)
    return np.array(list(tests))[best], np.minimum(1.0, 2 * ps.min(0))


def sequential_outcomes(values: np.ndarray, kind: Kind, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """``(leaning, p)`` of the sequential rule for per-seed values ``[..., N]`` in the order the seeds were added
    (any leading batch shape: one entry per study in the simulations): each conclusion's anytime-valid p-value at
    every look k = 2..N, its running minimum (valid however the looks stopped), and the smallest over the conclusions
    with the conclusion it belongs to. All conclusions of a claim share one e-value, so the smallest needs no
    doubling: a wrong conclusion at level u means the e-value at the true mean reached 1/u."""
    tests = conclusions(kind, delta, "sequential")
    best: np.ndarray | None = None
    for sample in prefix_samples(values):
        ps = np.stack([np.broadcast_to(f(sample), np.shape(sample.mean)) for f in tests.values()])
        best = ps if best is None else np.minimum(best, ps)
    if best is None:
        raise ValueError("the sequential rule needs at least 2 values per claim")
    return np.array(list(tests))[best.argmin(0)], best.min(0)


def sequential_seeds(sample: Interval, kind: Kind, delta: float, level: float) -> dict[str, int | None]:
    """Seeds (in total) at which the sequential rule would reach ``level`` if the mean and sd of ``sample`` stayed as
    observed: ``effect`` for the conclusion the observed effect points to (as :func:`seeds_needed`), ``delta`` for a
    margin conclusion it lies in; ``None`` where the observed effect lies in no conclusion's region, or beyond
    :data:`~spatialvit.report.inference.MAX_SEEDS`."""
    tests = conclusions(kind, delta, "sequential")
    margin = NO_EFFECT if kind == "superiority" else HOLDS if kind == "equivalence" else None
    out: dict[str, int | None] = {"effect": None, "delta": None}
    for n in range(max(sample.n + 1, 2), MAX_SEEDS + 1):
        at = replace(sample, n=n)
        for name, test in tests.items():
            key = "delta" if name == margin else "effect"
            if out[key] is None and float(test(at)) <= level:
                out[key] = n
        if out["effect"] is not None and (out["delta"] is not None or margin is None or abs(sample.mean) >= delta):
            break
    return out


def claim_outcome(sample: Interval, kind: Kind, delta: float) -> Outcome:
    """The conclusion ``sample`` (per-seed values of X − Y) leans to and its p-value (:func:`claim_outcomes`)."""
    leaning, p = claim_outcomes(sample, kind, delta)
    return Outcome(sample, str(leaning), float(p))


def verdict_of_interval(low: float, high: float, n: int, kind: Kind, delta: float, alpha: float = ALPHA) -> str:
    """The verdict of one claim tested alone at level ``alpha`` from its two-sided ``1 − alpha`` Student-t interval
    ``[low, high]`` over ``n`` seeds (the same rule as :func:`claim_outcome`)."""
    mean, half = (low + high) / 2, (high - low) / 2
    sd = half / float(t.ppf(1 - alpha / 2, n - 1)) * math.sqrt(n)
    res = claim_outcome(Interval(mean=mean, low=low, high=high, half_width=half, n=n, sd=sd), kind, delta)
    return res.leaning if res.p <= alpha else NOT_RESOLVED


def seeds_needed(sample: Interval, kind: Kind, delta: float, family: int, power: float = 0.8) -> dict[str, int | None]:
    """Seeds for ``power`` at the observed mean and sd of ``sample``, at the strictest Holm level (α/2 over a
    ``family`` of claims, one-sided): ``effect`` for the conclusion the observed effect points to (the direction
    of a superiority claim; holds or refuted of the others), ``delta`` for a margin conclusion that the observed
    effect would reach (a superiority claim's "no effect as large as δ" when |mean| < δ; an equivalence claim's
    holds). TOST needs both sides: each gets power √``power``. ``None``: not reachable at the observed effect (or
    more than 1000 seeds)."""
    a = ALPHA / 2 / max(family, 1)
    m, sd = sample.mean, sample.sd
    both = math.sqrt(power)

    def tost_seeds() -> int | None:
        sides = [seeds_for_power(m + delta, sd, a, both), seeds_for_power(delta - m, sd, a, both)]
        return None if None in sides else max(sides)  # type: ignore[type-var]

    if kind == "superiority":
        return {"effect": seeds_for_power(abs(m), sd, a, power), "delta": tost_seeds() if abs(m) < delta else None}
    if kind == "non-inferiority":
        return {"effect": seeds_for_power(abs(m + delta), sd, a, power), "delta": None}
    return {"effect": seeds_for_power(abs(m) - delta, sd, a, power) if abs(m) > delta else tost_seeds(),
            "delta": None}  # fmt: skip


def expand(claims: Sequence[Claim], grids: Sequence[str]) -> list[Claim]:
    """The claims as tested: each ``per_grid`` claim once per grid of ``grids`` (``"8x8"``), the others as they are."""
    return [x for c in claims for x in ([c.at_grid(g) for g in grids] if c.per_grid else [c])]


def _sample(
    rows: Sequence[Row], claim: Claim, model: str, reference: str | None, rule: Rule = "fixed"
) -> list[float] | None:
    """Per-seed values of the claim's measure (paired by seed); ``None`` when none was measured. The sequential rule
    reads its looks in seed order, so it takes the paired seeds of the longest run of the study's seeds (ascending)
    that has them all: a seed added for other claims beyond a gap waits until the gap is filled."""
    values = by_seed(rows, claim.measure)
    if model not in values:
        raise ValueError(f"no rows for model {model!r}; have {list(values)}")
    x = values[model]
    if reference is None:
        y = dict.fromkeys(x, 0.0)
    else:
        ref_values = by_seed(rows, claim.reference_measure or claim.measure)
        if reference not in ref_values:
            raise ValueError(f"no rows for model {reference!r}; have {list(ref_values)}")
        y = ref_values[reference]
    seeds = [s for s in x if s in y]
    if rule == "sequential":
        order = sorted({r["seed"] for r in rows})
        gap = next((k for k, s in enumerate(order) if s not in seeds), len(order))
        seeds = order[:gap]
    return [x[s] - y[s] for s in seeds] if seeds else None


def evaluate_claims(
    claims: Sequence[Claim],
    rows: Sequence[Row],
    roles: Mapping[str, str],
    invalid: Mapping[str, str] | None = None,
    rule: Rule = "fixed",
) -> list[Row]:
    """One row per claim whose roles are all in ``roles`` (role -> model name), from per-seed ``rows`` (keys
    ``model``, ``seed`` and the measures): what is claimed (``id``, ``source``, ``quote``, ``claim``, ``kind``,
    ``delta``, ``delta_reason``, ``measure``), the per-seed result (``effect``, ``ci_low``, ``ci_high`` of the 95 %
    interval, ``n``), the tests (``leaning``, ``p``, ``p_holm``), the ``verdict`` and, for a claim not conclusive,
    the seeds that 80 % power would need (``seeds_effect``, ``seeds_delta``). ``invalid`` maps a model to the reason
    its claims are not valid (validity gate). Holm's family: the claims with a test. ``rule``: ``"fixed"`` (Student-t
    at the seeds there are) or ``"sequential"`` (anytime-valid: :func:`sequential_outcomes`, for seeds added while
    looking at the verdicts; ``seeds_*`` then give the total seeds at which the observed effect would resolve)."""
    known = {*ROLES, *(r for c in claims for r in (c.model, c.reference) if r is not None)}
    if unknown := set(roles) - known:
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {sorted(known)}")
    invalid = invalid or {}
    out: list[Row] = []
    tests: list[Outcome | None] = []
    for claim in claims:
        if not _in(claim, roles):
            continue
        model = roles[claim.model]
        reference = roles[claim.reference] if claim.reference is not None else None
        values = _sample(rows, claim, model, reference, rule)
        sample = None if values is None else mean_ci(values, 1 - ALPHA)
        row: Row = {"id": claim.id, "source": claim.source, "quote": claim.quote, "claim": claim.text}
        row |= {"kind": claim.kind, "delta": claim.delta, "delta_reason": claim.delta_reason}
        row |= {"measure": _measure(claim, model, reference), "effect": None if sample is None else sample.mean}
        row |= {"ci_low": None, "ci_high": None, "n": 0 if sample is None else sample.n}
        row |= {"leaning": None, "p": None, "p_holm": None}
        bad = [m for m in dict.fromkeys([model, reference]) if m in invalid]
        test = None
        if sample is None:
            row["verdict"] = NOT_MEASURED
        elif bad:
            row["verdict"] = f"{NOT_VALID} ({', '.join(bad)})"
        elif sample.single_seed:
            row["verdict"] = SINGLE_SEED
        else:
            if rule == "sequential":
                leaning, p = sequential_outcomes(np.array(values), claim.kind, claim.delta)
                test = Outcome(sample, str(leaning), float(p))
            else:
                test = claim_outcome(sample, claim.kind, claim.delta)
            row |= {"ci_low": sample.low, "ci_high": sample.high, "leaning": test.leaning, "p": test.p}
        tests.append(test)
        out.append(row)
    adjusted = holm([math.nan if t is None else t.p for t in tests])
    family = sum(t is not None for t in tests)
    for row, test, p_holm, claim in zip(out, tests, adjusted, [c for c in claims if _in(c, roles)]):
        row["seeds_effect"] = row["seeds_delta"] = None
        if test is None:
            continue
        row["p_holm"] = p_holm
        row["verdict"] = test.leaning if p_holm <= ALPHA else NOT_RESOLVED
        if row["verdict"] not in CONCLUSIVE:
            if rule == "sequential":
                need = sequential_seeds(test.sample, claim.kind, claim.delta, ALPHA / family)
            else:
                need = seeds_needed(test.sample, claim.kind, claim.delta, family)
            row["seeds_effect"], row["seeds_delta"] = need["effect"], need["delta"]
    return out


def _measure(claim: Claim, model: str, reference: str | None) -> str:
    """``"test_acc1: A − B"``, ``"prior_dist_px: A − A attn_dist_px"`` or ``"rate_spread: A"`` (against 0)."""
    if reference is None:
        return f"{claim.measure}: {model}"
    other = f" {claim.reference_measure}" if claim.reference_measure else ""
    return f"{claim.measure}: {model} − {reference}{other}"


def _in(claim: Claim, roles: Mapping[str, str]) -> bool:
    return claim.model in roles and (claim.reference is None or claim.reference in roles)


def validity(
    rows: Sequence[Row], chance: float, column: str = "test_acc1", fallback: str = "clean_acc1"
) -> dict[str, str]:
    """The validity gate: models whose ``column`` over seeds (``fallback`` where a model has none, e.g. a checkpoint
    scored on other data) is not clearly above chance — the lower end of its 95 % interval (or its single value) at
    most :data:`GATE` of the way from ``chance`` to 1 — or not finite, with the reason."""
    floor = chance + GATE * (1 - chance)
    out: dict[str, str] = {}
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        column = column if any(r.get(column) is not None for r in mine) else fallback
        values = [r.get(column) for r in mine]
        if any(v is not None and not math.isfinite(v) for v in values):
            out[model] = f"{model}: {column} not finite (the run diverged)"
            continue
        values = [v for v in values if v is not None]
        if not values:
            continue
        ci = mean_ci(values, 1 - ALPHA)
        low = ci.mean if ci.single_seed else ci.low
        if low <= floor:
            out[model] = f"{model}: {column} {ci.mean:.3f}, lower end {low:.3f} ≤ the floor {floor:.3f}"
    return out
