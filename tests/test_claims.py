"""The claims registry and its verdicts (study/claims.py) and the tests behind them (report/inference.py): margins,
two one-sided tests, Holm's adjustment, power, the validity gate, and simulations of the error rates."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from spatialvit.report.inference import holm, p_greater, p_less, power_one_sided, seeds_for_power, tost
from spatialvit.report.stats import Interval, mean_ci
from spatialvit.study.claims import (
    ALPHA,
    CLAIMS,
    CONCLUSIVE,
    HOLDS,
    KINDS,
    NO_EFFECT,
    NOT_MEASURED,
    NOT_RESOLVED,
    NOT_VALID,
    REFUTED,
    SINGLE_SEED,
    VERDICT_RULE,
    Outcome,
    claim_outcome,
    claim_outcomes,
    evaluate_claims,
    expand,
    validity,
    verdict_of_interval,
)

ROLES = {"cnn": "cnn", "plain": "vit", "conv_qkv": "conv", "positional": "pos", "decay": "rmt", "sdt": "sdt"}
GRIDS = ["8x8", "2x2"]


# --- tests of one claim --------------------------------------------------------------------------------------------


def test_non_inferiority_holds_above_minus_delta_and_is_refuted_below():
    assert verdict_of_interval(-0.005, 0.02, 3, "non-inferiority", 0.01) == HOLDS
    assert verdict_of_interval(-0.05, -0.02, 3, "non-inferiority", 0.01) == REFUTED
    assert verdict_of_interval(-0.015, 0.02, 3, "non-inferiority", 0.01) == NOT_RESOLVED
    # the same interval read as superiority is not resolved: "at least as good" is not "better"
    assert verdict_of_interval(-0.005, 0.02, 3, "superiority", 0.01) == NOT_RESOLVED


def test_superiority_inside_the_margin_is_no_effect_as_large_as_delta():
    assert verdict_of_interval(-0.004, 0.006, 5, "superiority", 0.01) == NO_EFFECT
    assert verdict_of_interval(0.002, 0.03, 5, "superiority", 0.01) == HOLDS
    assert verdict_of_interval(-0.03, -0.002, 5, "superiority", 0.01) == REFUTED
    assert verdict_of_interval(-0.004, 0.012, 5, "superiority", 0.01) == NOT_RESOLVED  # reaches past δ


def test_equivalence_holds_inside_and_is_refuted_outside_the_margin():
    assert verdict_of_interval(-0.008, 0.009, 3, "equivalence", 0.01) == HOLDS
    assert verdict_of_interval(0.012, 0.05, 3, "equivalence", 0.01) == REFUTED
    assert verdict_of_interval(-0.05, -0.011, 3, "equivalence", 0.01) == REFUTED
    assert verdict_of_interval(-0.005, 0.015, 3, "equivalence", 0.01) == NOT_RESOLVED


def test_one_sided_p_and_tost_agree_with_scipy():
    x = [0.002, -0.003, 0.004, 0.001, 0.0, 0.006]
    s, delta = mean_ci(x), 0.01
    assert p_greater(s, 0.0) == pytest.approx(sps.ttest_1samp(x, 0.0, alternative="greater").pvalue, rel=1e-10)
    assert p_less(s, 0.0) == pytest.approx(sps.ttest_1samp(x, 0.0, alternative="less").pvalue, rel=1e-10)
    low = sps.ttest_1samp(x, -delta, alternative="greater").pvalue
    high = sps.ttest_1samp(x, delta, alternative="less").pvalue
    assert tost(s, -delta, delta) == pytest.approx(max(low, high), rel=1e-10)
    # constant values: exact answers instead of a division by 0; one value: no test
    assert p_greater(mean_ci([0.1, 0.1, 0.1]), 0.0) == 0.0 and p_less(mean_ci([0.1, 0.1]), 0.0) == 1.0
    assert math.isnan(p_greater(mean_ci([0.1]), 0.0))


def test_claim_p_value_is_twice_the_leaning_conclusions():
    s = mean_ci([0.03, 0.05, 0.04, 0.06])
    res = claim_outcome(s, "superiority", 0.01)
    assert res.leaning == HOLDS and res.p == pytest.approx(2 * p_greater(s, 0.0))
    # the two-sided 95 % interval excludes 0 exactly when the doubled p is below 0.05
    assert (s.low > 0) == (res.p < 0.05)


def test_holm_equals_a_hand_computation():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1, monotone
    out = holm([0.02, math.nan, 0.01])  # no test: left out of the family
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([]) == []


def test_seeds_for_power_matches_the_noncentral_t():
    # d = 1 at one-sided 2.5 %: 10 pairs for 80 % power (the textbook value for a two-sided 5 % paired t-test)
    assert seeds_for_power(1.0, 1.0, 0.025) == 10
    n = seeds_for_power(0.5, 1.0, 0.025)
    assert power_one_sided(0.5, 1.0, n, 0.025) >= 0.8 > power_one_sided(0.5, 1.0, n - 1, 0.025)
    assert seeds_for_power(0.0, 1.0, 0.025) is None and seeds_for_power(-1.0, 1.0, 0.025) is None
    assert seeds_for_power(1e-4, 1.0, 0.025) is None  # beyond the 1000-seed search
    rng = np.random.default_rng(0)  # the power itself, by simulation: 4,000 studies of n seeds
    sims = rng.normal(0.5, 1.0, size=(4000, n))
    t = sims.mean(1) / (sims.std(1, ddof=1) / math.sqrt(n))
    assert np.mean(t > sps.t.ppf(0.975, n - 1)) == pytest.approx(power_one_sided(0.5, 1.0, n, 0.025), abs=0.03)


# --- simulations: wrong verdicts stay at the nominal level ---------------------------------------------------------


def _wrong(kind: str, verdict: str, mu: float, delta: float) -> bool:
    """Whether ``verdict`` is false for a true mean difference ``mu``."""
    if verdict == HOLDS:
        return {"superiority": mu <= 0, "non-inferiority": mu <= -delta, "equivalence": abs(mu) >= delta}[kind]
    if verdict == REFUTED:
        return {"superiority": mu >= 0, "non-inferiority": mu >= -delta, "equivalence": abs(mu) <= delta}[kind]
    if verdict == NO_EFFECT:
        return abs(mu) >= delta
    return False


def simulate(mu: float, delta: float, n: int, runs: int, rng: np.random.Generator) -> Interval:
    """``runs`` simulated studies of ``n`` seeds with per-seed differences ~ N(mu, delta): their means and sds."""
    values = rng.normal(mu, delta, size=(runs, n))
    mean, sd = values.mean(1), values.std(1, ddof=1)
    half = sps.t.ppf(1 - ALPHA / 2, n - 1) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, half, n, sd)


def wrong_verdicts(kind: str, leaning: np.ndarray, p: np.ndarray, mu: float, delta: float) -> np.ndarray:
    return np.array([pi <= ALPHA and _wrong(kind, c, mu, delta) for c, pi in zip(leaning, p)])


@pytest.mark.parametrize("kind", list(KINDS))
def test_simulated_wrong_verdict_rate_per_kind_is_at_most_alpha(kind):
    # per kind, 4 true effects x 10,000 simulated 3-seed studies (per-seed sd = δ, unknown to the test). At the worst
    # effect the wrong-verdict rate is alpha (two conclusions wrong at once, alpha/2 each); allow 3 simulation sds.
    delta, n, runs = 0.01, 3, 10_000
    rng = np.random.default_rng(1)
    bound = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    for mu in (0.0, delta, -delta, 2 * delta):
        leaning, p = claim_outcomes(simulate(mu, delta, n, runs, rng), kind, delta)  # type: ignore[arg-type]
        rate = wrong_verdicts(kind, leaning, p, mu, delta).mean()
        assert rate <= bound, (kind, mu, rate)
    # the scalar path agrees with the vectorised one
    one = mean_ci([0.012, 0.02, 0.018], 1 - ALPHA)
    leaning, p = claim_outcomes(one, kind, delta)  # type: ignore[arg-type]
    assert claim_outcome(one, kind, delta) == Outcome(one, str(leaning), float(p))  # type: ignore[arg-type]


def test_simulated_family_wise_error_with_holm_is_at_most_alpha():
    # 10,000 simulated studies of five claims (kinds and effects at their worst cases), 5 seeds each: the share of
    # studies with at least one wrong verdict after Holm's adjustment stays at or below alpha.
    delta, n, runs = 0.01, 5, 10_000
    family = [("superiority", 0.0), ("superiority", delta), ("non-inferiority", -delta),
              ("equivalence", delta), ("equivalence", 0.0)]  # fmt: skip
    rng = np.random.default_rng(2)
    outcomes = [claim_outcomes(simulate(mu, delta, n, runs, rng), kind, delta) for kind, mu in family]
    any_wrong = 0
    for k in range(runs):
        adjusted = holm([float(p[k]) for _, p in outcomes])
        any_wrong += any(p <= ALPHA and _wrong(kind, leaning[k], mu, delta)
                         for (kind, mu), (leaning, _), p in zip(family, outcomes, adjusted))  # fmt: skip
    assert any_wrong / runs <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)


# --- the registry on study rows ------------------------------------------------------------------------------------


def claim_rows(seeds: int = 3, **changes: list[float | None]) -> list[dict]:
    """Per-seed rows of the six models where every claim holds clearly; ``changes`` replace ``<role>_<column>``."""
    base = {
        "cnn": {"test_acc1": 0.95, "shuffle_drop_8x8": 0.9, "shuffle_drop_2x2": 0.6, "mask_drop_8x8": 0.6,
                "mask_drop_2x2": 0.7, "attn_dist_px": None, "prior_dist_px": None, "rate_spread": None},
        "plain": {"test_acc1": 0.85, "shuffle_drop_8x8": 0.3, "shuffle_drop_2x2": 0.2, "mask_drop_8x8": 0.2,
                  "mask_drop_2x2": 0.3, "attn_dist_px": 16.0, "prior_dist_px": 16.5, "rate_spread": None},
        "conv_qkv": {"test_acc1": 0.86, "shuffle_drop_8x8": 0.5, "shuffle_drop_2x2": 0.4, "mask_drop_8x8": 0.4,
                     "mask_drop_2x2": 0.5, "attn_dist_px": 15.0, "prior_dist_px": 16.5, "rate_spread": None},
        "positional": {"test_acc1": 0.85, "shuffle_drop_8x8": 0.3, "shuffle_drop_2x2": 0.2, "mask_drop_8x8": 0.2,
                       "mask_drop_2x2": 0.3, "attn_dist_px": 15.0, "prior_dist_px": None, "rate_spread": None},
        "decay": {"test_acc1": 0.88, "shuffle_drop_8x8": 0.3, "shuffle_drop_2x2": 0.2, "mask_drop_8x8": 0.2,
                  "mask_drop_2x2": 0.3, "attn_dist_px": 11.0, "prior_dist_px": 14.2, "rate_spread": 0.0},
        "sdt": {"test_acc1": 0.91, "shuffle_drop_8x8": 0.3, "shuffle_drop_2x2": 0.2, "mask_drop_8x8": 0.2,
                "mask_drop_2x2": 0.3, "attn_dist_px": 10.0, "prior_dist_px": 14.2, "rate_spread": 0.3},
    }  # fmt: skip
    noise = [0.0, 0.002, -0.001, 0.001, -0.002][:seeds]  # shared by all models at a seed
    rows = []
    for role, cols in base.items():
        for k, e in enumerate(noise):
            row = {"model": ROLES[role], "seed": k}
            for col, v in cols.items():
                given = changes.get(f"{role}_{col}")
                row[col] = given[k] if given is not None else None if v is None else v + e * (col != "prior_dist_px")
            rows.append(row)
    return rows


def verdicts(rows: list[dict], roles: dict = ROLES, invalid: dict | None = None) -> dict[str, str]:
    return {c["id"]: c["verdict"] for c in evaluate_claims(expand(CLAIMS, GRIDS), rows, roles, invalid)}


def test_every_claim_holds_on_clear_evidence_and_rows_say_what_was_tested():
    claims = evaluate_claims(expand(CLAIMS, GRIDS), claim_rows(), ROLES)
    ids = [c["id"] for c in claims]
    assert ids[:4] == ["a@8x8", "a@2x2", "b@8x8", "b@2x2"] and len(ids) == 8 + 8
    # d (non-inferiority) and e (equivalence) hold; everything else is a clear superiority
    assert {c["id"]: c["verdict"] for c in claims} == dict.fromkeys(ids, HOLDS)
    a = claims[0]
    assert a["measure"] == "shuffle_drop_8x8: cnn − vit" and a["kind"] == "superiority" and a["n"] == 3
    assert a["effect"] == pytest.approx(0.6) and a["ci_low"] <= a["effect"] <= a["ci_high"]
    assert a["quote"].startswith("a significant sensitivity gap") and a["delta"] == 0.05
    assert 0 <= a["p"] <= a["p_holm"] <= ALPHA
    g1 = next(c for c in claims if c["id"] == "g1")
    assert g1["measure"] == "prior_dist_px: rmt − rmt attn_dist_px" and g1["effect"] == pytest.approx(3.2, abs=1e-3)
    f3 = next(c for c in claims if c["id"] == "f3")
    assert f3["measure"] == "rate_spread: sdt" and f3["effect"] == pytest.approx(0.3, abs=1e-3)


def test_opposite_evidence_is_refuted_and_small_effects_are_no_effect():
    v = verdicts(claim_rows(cnn_shuffle_drop_2x2=[0.05, 0.06, 0.04], conv_qkv_test_acc1=[0.80, 0.801, 0.799],
                            sdt_test_acc1=[0.881, 0.8825, 0.8805]))  # fmt: skip
    assert v["a@2x2"] == REFUTED and v["a@8x8"] == HOLDS  # the order reverses between grids
    assert v["d"] == REFUTED  # 5 points worse: beyond the 1-point margin
    assert v["f1"] == NO_EFFECT  # SDT - RMT = +0.001 ± tiny: inside ±1 point


def test_noisy_evidence_is_not_resolved_with_the_seeds_it_would_need():
    rows = claim_rows(sdt_test_acc1=[0.90, 0.87, 0.91])  # SDT - RMT: +0.02, -0.012, +0.031
    f1 = next(c for c in evaluate_claims(expand(CLAIMS, GRIDS), rows, ROLES) if c["id"] == "f1")
    assert f1["verdict"] == NOT_RESOLVED and f1["p_holm"] > ALPHA
    assert f1["seeds_effect"] is not None and f1["seeds_effect"] > 3


def test_holm_makes_a_marginal_claim_not_resolved():
    # alone (one claim in the family) the marginal accuracy gain holds; among 16 claims it does not
    rows = claim_rows(sdt_test_acc1=[0.91, 0.92, 0.905])  # SDT - plain > 0 with p just under 0.05
    alone = evaluate_claims([c for c in CLAIMS if c.id == "f2"], rows, ROLES)[0]
    assert alone["verdict"] == HOLDS and alone["p_holm"] == alone["p"]
    family = next(c for c in evaluate_claims(expand(CLAIMS, GRIDS), rows, ROLES) if c["id"] == "f2")
    assert family["p"] == alone["p"] and family["p_holm"] > alone["p"]


def test_validity_gate_makes_claims_on_untrained_models_not_valid():
    rows = claim_rows(plain_test_acc1=[0.22, 0.25, 0.21])
    invalid = validity(rows, chance=0.1)
    assert list(invalid) == ["vit"] and "≤ the floor 0.280" in invalid["vit"]
    v = verdicts(rows, invalid=invalid)
    assert v["a@8x8"] == v["e"] == f"{NOT_VALID} (vit)"
    assert v["f1"] == HOLDS  # no plain ViT in it
    assert validity(claim_rows(), chance=0.1) == {}
    diverged = claim_rows(plain_test_acc1=[0.85, math.nan, 0.86])
    assert "diverged" in validity(diverged, chance=0.1)["vit"]


def test_single_seed_missing_roles_and_unmeasured_columns():
    assert set(verdicts(claim_rows(seeds=1)).values()) == {SINGLE_SEED}
    roles = {"plain": "vit", "decay": "rmt", "sdt": "sdt"}
    rows = [r for r in claim_rows() if r["model"] in roles.values()]
    rows = [r | {"rate_spread": None} if r["model"] == "sdt" else r for r in rows]
    v = verdicts(rows, roles)
    assert list(v) == ["f1", "f2", "f3", "g1", "g2", "h"] and v["f3"] == NOT_MEASURED
    assert evaluate_claims(expand(CLAIMS, GRIDS), rows, {}) == []
    with pytest.raises(ValueError, match="unknown roles"):
        evaluate_claims(CLAIMS, rows, {"vit": "vit"})
    with pytest.raises(ValueError, match="no rows for model 'conv'"):
        evaluate_claims(expand(CLAIMS, GRIDS), rows, {"plain": "vit", "conv_qkv": "conv"})


def test_verdict_rule_states_every_outcome():
    for text in (HOLDS, REFUTED, NO_EFFECT, NOT_RESOLVED, SINGLE_SEED, NOT_MEASURED, NOT_VALID, "Holm", "α/2"):
        assert text in VERDICT_RULE
    assert set(CONCLUSIVE) == {HOLDS, REFUTED, NO_EFFECT}
    assert len({c.id for c in CLAIMS}) == len(CLAIMS) and all(c.quote and c.delta_reason for c in CLAIMS)
