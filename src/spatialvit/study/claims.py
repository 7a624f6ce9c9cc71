"""The papers' claims, checked on the study's per-seed rows: each claim is a paired (same-seed) difference of one
column between two models, with a Student-t interval over seeds and a verdict read from the numbers only
(:data:`VERDICT_RULE`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from ..report.stats import Interval, model_difference
from ..report.tables import Row

ROLES = ("cnn", "plain", "conv_qkv", "positional", "decay", "sdt")
EQUIVALENCE_MARGIN = 0.01  # one accuracy point: accuracies are fractions in [0, 1]

HOLDS = "holds"
REFUTED = "refuted"
NOT_RESOLVED = "not resolved at this budget"
SINGLE_SEED = "not resolved (single seed)"
NOT_MEASURED = "not measured"

VERDICT_RULE = (
    "Each claim is measured as the difference X − Y of one column between two models, taken per seed (both "
    "trained with the same seed) and averaged over the seeds both have, with a Student-t confidence interval over "
    "those per-seed differences. A claim that X > Y, or that X is not worse than Y (X ≥ Y): interval entirely "
    f"above 0 → {HOLDS}; entirely below 0 → {REFUTED}; containing 0 → {NOT_RESOLVED} (a difference that is not "
    "significant is not taken as evidence of no difference). A claim that X matches Y in accuracy: interval inside "
    f"±{EQUIVALENCE_MARGIN:g} (±{100 * EQUIVALENCE_MARGIN:g} accuracy point) → {HOLDS}; entirely outside it → "
    f"{REFUTED}; otherwise {NOT_RESOLVED}. With one seed there is no interval: {SINGLE_SEED}. A claim whose column "
    f"was not measured for both models is {NOT_MEASURED}; one whose models are not in the study is left out."
)

Kind = Literal[">", ">=", "~="]  # X - Y > 0 (X more), >= 0 (X not worse), ~= 0 (X matches Y within the margin)
EXPECTED: dict[str, str] = {">": "> 0", ">=": "≥ 0", "~=": f"within ±{EQUIVALENCE_MARGIN:g}"}


@dataclass(frozen=True)
class Claim:
    """The claim that ``column(model) - column(reference)`` is ``kind`` 0; ``model`` and ``reference`` are roles."""

    id: str
    text: str
    source: str
    column: str
    model: str
    reference: str
    kind: Kind


XU = "Xu, ACML 2025"
JELASSI = "Jelassi et al., NeurIPS 2022"
MAO = "Mao (SDT), AAAI 2026"
RMT = "RMT, CVPR 2024"

CLAIMS = (
    Claim("a", "CNNs are more sensitive than ViTs to block shuffles", XU, "ssi_shuffle", "cnn", "plain", ">"),
    Claim("b", "CNNs are more sensitive than ViTs to block masks", XU, "ssi_mask", "cnn", "plain", ">"),
    Claim("c1", "Conv Q/K/V raises a ViT's block-shuffle sensitivity", XU, "ssi_shuffle", "conv_qkv", "plain", ">"),
    Claim("c2", "Conv Q/K/V raises a ViT's block-mask sensitivity", XU, "ssi_mask", "conv_qkv", "plain", ">"),
    Claim("d", "Conv Q/K/V costs no clean accuracy", XU, "clean_acc1", "conv_qkv", "plain", ">="),
    Claim("e", "Positional attention is as accurate as plain attention", JELASSI, "clean_acc1", "positional", "plain",
          "~="),
    Claim("f1", "SDT is at least as accurate as fixed decay", MAO, "clean_acc1", "sdt", "decay", ">="),
    Claim("f2", "Fixed decay is at least as accurate as plain attention", MAO, "clean_acc1", "decay", "plain", ">="),
    Claim("g1", "Fixed-decay attention is more local than plain attention", RMT, "attn_dist_px", "plain", "decay",
          ">"),
    Claim("g2", "SDT attention is more local than plain attention", MAO, "attn_dist_px", "plain", "sdt", ">"),
)  # fmt: skip


def verdict(interval: Interval, kind: Kind) -> str:
    """The verdict of :data:`VERDICT_RULE` for a claim of ``kind`` measured as ``interval``."""
    if interval.single_seed:
        return SINGLE_SEED
    low, high = interval.low, interval.high
    if kind == "~=":
        if low >= -EQUIVALENCE_MARGIN and high <= EQUIVALENCE_MARGIN:
            return HOLDS
        return REFUTED if high < -EQUIVALENCE_MARGIN or low > EQUIVALENCE_MARGIN else NOT_RESOLVED
    return HOLDS if low > 0 else REFUTED if high < 0 else NOT_RESOLVED


def evaluate_claims(rows: Sequence[Row], roles: Mapping[str, str], confidence: float = 0.95) -> list[Row]:
    """One row per claim of :data:`CLAIMS` whose two roles are in ``roles`` (role -> model name), from the study's
    per-seed rows (keys ``model``, ``seed`` and the claim columns): ``id``, ``claim``, ``source``, ``measure``
    (which difference), ``expected``, ``effect`` (mean difference), ``ci_low``, ``ci_high``, ``n`` (seeds paired)
    and ``verdict``. Numbers are ``None`` where there are none (not measured; no interval from one seed)."""
    if unknown := set(roles) - set(ROLES):
        raise ValueError(f"unknown roles {sorted(unknown)}; roles are {list(ROLES)}")
    out = []
    for claim in CLAIMS:
        if claim.model not in roles or claim.reference not in roles:
            continue
        model, reference = roles[claim.model], roles[claim.reference]
        diff = model_difference(rows, claim.column, model, reference, confidence=confidence)
        ci = None if diff is None or diff.single_seed else diff
        out.append(
            {
                "id": claim.id,
                "claim": claim.text,
                "source": claim.source,
                "measure": f"{claim.column}: {model} − {reference}",
                "expected": EXPECTED[claim.kind],
                "effect": None if diff is None else diff.mean,
                "ci_low": None if ci is None else ci.low,
                "ci_high": None if ci is None else ci.high,
                "n": 0 if diff is None else diff.n,
                "verdict": NOT_MEASURED if diff is None else verdict(diff, claim.kind),
            }
        )
    return out
