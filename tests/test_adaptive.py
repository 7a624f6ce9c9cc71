"""Adaptive studies (``until_resolved``): the round planner on made-up claims and costs, and a tiny real study with a
synthetic claim set — seeds go only to the models an open claim needs, the budget and max_seeds stop it, and a study
killed in the middle resumes to the same final tables as one that ran through."""

from __future__ import annotations

import json
import math

import pytest
from tests.test_study import tiny

from spatialvit.study import WALL_CLOCK, StudyConfig, run_study
from spatialvit.study import runner as study_runner
from spatialvit.study.adaptive import LEDGER, Ledger, claim_models, plan_round
from spatialvit.study.claims import HOLDS, NOT_RESOLVED, Claim

COSTS = {m: {"train": t, "analyse": 1.0} for m, t in (("cnn", 10.0), ("vit", 20.0), ("pos", 40.0))}


def claim_row(cid: str, measure: str, verdict: str, n: int, need: int | None) -> dict:
    return {"id": cid, "measure": measure, "verdict": verdict, "n": n, "seeds_effect": need, "seeds_delta": None}


def test_claim_models_reads_the_measure():
    assert claim_models({"measure": "test_acc1: a − b"}) == ["a", "b"]
    assert claim_models({"measure": "prior_dist_px: a − a attn_dist_px"}) == ["a"]
    assert claim_models({"measure": "rate_spread: a"}) == ["a"]


def test_plan_takes_open_claims_cheapest_first_within_the_budget():
    have = {(m, s) for m in ("cnn", "vit", "pos") for s in (0, 1, 2)}
    claims = [claim_row("done", "x: cnn − vit", HOLDS, 3, None),
              claim_row("cheap", "x: vit − cnn", NOT_RESOLVED, 3, 5),
              claim_row("dear", "x: pos − vit", NOT_RESOLVED, 3, 9)]  # fmt: skip
    plan = plan_round(claims, have, [0, 1, 2, 3, 4], COSTS, workers=1, remaining_s=None)
    assert plan.claims == ["cheap", "dear"] and plan.jobs == [("vit", 3), ("cnn", 3), ("pos", 3)]
    # a budget that fits only the cheap claim's seed (cnn + vit: 30 s of training, 2 s of analysis)
    plan = plan_round(claims, have, [0, 1, 2, 3, 4], COSTS, workers=1, remaining_s=40)
    assert plan.claims == ["cheap"] and plan.jobs == [("vit", 3), ("cnn", 3)] and plan.seconds == 32
    # nothing fits: the reason names the cheapest next seed
    plan = plan_round(claims, have, [0, 1, 2, 3, 4], COSTS, workers=1, remaining_s=5)
    assert not plan.jobs and plan.stop.startswith("budget: the cheapest next seed takes about 32 s")
    # a claim's next seed is the first one any of its models lacks: the gap at seed 3 is filled first
    plan = plan_round(claims[1:2], have | {("vit", 3), ("vit", 4), ("cnn", 4)}, range(6), COSTS, 1, None)
    assert plan.jobs == [("cnn", 3)]
    # no open claim left, or every seed used
    assert plan_round(claims[:1], have, [0, 1, 2], COSTS, 1, None).stop == "every claim is conclusive"
    assert plan_round(claims, have, [0, 1, 2], COSTS, 1, None).stop.startswith("max_seeds")


def test_adaptive_config_is_checked():
    with pytest.raises(ValueError, match="pilot of at least 3 seeds"):
        StudyConfig(seeds=[0, 1], until_resolved=True)
    with pytest.raises(ValueError, match="budget must be a positive time"):
        StudyConfig(seeds=[0, 1, 2], until_resolved=True, budget="soon")
    with pytest.raises(ValueError, match="needs until_resolved"):
        StudyConfig(budget="10m")
    cfg = StudyConfig(seeds=[0, 1, 2], until_resolved=True, budget="2h", max_seeds=5)
    assert cfg.budget_s == 7200 and cfg.seed_sequence == [0, 1, 2, 3, 4]
    assert StudyConfig(seeds=[0, 1, 2], until_resolved=True, budget="90").budget_s == 5400  # plain: minutes


# A synthetic claim set: (s1) the ResNet has more parameters than the ViT — exact, so it resolves once the sequential
# rule has seeds enough (4: the e-value of 4 exact values is 41^1.5 = 262 > 2 / 0.05); (s2) the positional ViT
# "equals" the plain ViT in chance accuracy with a zero margin — identical values that no conclusion can ever take,
# so it stays open to max_seeds.
SYNTHETIC = (
    Claim(id="s1", source="test", quote="", text="the CNN is larger", measure="params", model="cnn",
          reference="plain", kind="superiority", delta=1.0, delta_reason="exact"),
    Claim(id="s2", source="test", quote="", text="never settles", measure="chance_acc1", model="positional",
          reference="plain", kind="equivalence", delta=0.0, delta_reason="none"),
)


def adaptive(out, **changes) -> StudyConfig:
    cfg = tiny(out, seeds=[0, 1, 2], until_resolved=True, max_seeds=6, **changes)
    return StudyConfig.from_dict({"train": {"train_limit": 200}}, cfg)


def synthetic_claims(mp: pytest.MonkeyPatch) -> None:
    """The study tests the synthetic claims, on models it trains far too briefly to pass the validity gate (the
    gate is tested in test_claims.py and test_honest_outputs.py): the gate is switched off here."""
    mp.setattr(study_runner, "CLAIMS", SYNTHETIC)
    mp.setattr(study_runner, "validity", lambda *args, **kwargs: {})


def seeds_of(out) -> dict[str, list[int]]:
    rows = json.loads((out / "comparison_seeds.json").read_text())
    return {m: [r["seed"] for r in rows if r["model"] == m] for m in dict.fromkeys(r["model"] for r in rows)}


def fixed_columns(out) -> list[dict]:
    rows = json.loads((out / "comparison_seeds.json").read_text())
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in rows]


@pytest.fixture(scope="module")
def through(tmp_path_factory):
    """The synthetic adaptive study, run without interruption."""
    out = tmp_path_factory.mktemp("through")
    with pytest.MonkeyPatch.context() as mp:
        synthetic_claims(mp)
        run_study(adaptive(out))
    return out


def test_adaptive_study_adds_seeds_only_where_an_open_claim_needs_them(through):
    claims = {c["id"]: c for c in json.loads((through / "claims.json").read_text())}
    assert claims["s1"]["verdict"] == HOLDS and claims["s1"]["n"] == 4
    assert claims["s2"]["verdict"] == NOT_RESOLVED and claims["s2"]["n"] == 6
    # the CNN stops at 4 seeds once s1 holds; the two ViTs go on to max_seeds for s2
    assert seeds_of(through) == {"resnet_small": [0, 1, 2, 3], "vit_micro_patch4": [0, 1, 2, 3, 4, 5],
                                 "vit_posattn_micro_patch4": [0, 1, 2, 3, 4, 5]}  # fmt: skip
    ledger = Ledger.load(through)
    assert ledger.stopped.startswith("max_seeds") and len(ledger.rounds) == 4
    assert sorted(ledger.rounds[3].jobs) == [["vit_micro_patch4", 5], ["vit_posattn_micro_patch4", 5]]
    assert ledger.rounds[3].claims == ["s2"] and ledger.looks("s1") == 2 and ledger.looks("s2") == 4
    report = (through / "report.md").read_text()
    assert "## Adaptive seeds" in report and "## Where the time went" in report and "Lai 1976" in report
    assert all(f"| {phase} |" in report for phase in ("data", "training", "analysis"))
    costs = json.loads((through / "cost.json").read_text())
    assert len(costs) == 16 and all(r["sweep_s"] > 0 and r["train_s"] > 0 for r in costs)


def test_a_killed_adaptive_study_resumes_to_the_same_tables(through, tmp_path, monkeypatch):
    synthetic_claims(monkeypatch)
    analyse, calls = study_runner._analyse, []

    def killed(*args, **kwargs):
        calls.append(1)
        if len(calls) == 13:  # the first run of round 2 (9 pilot runs, 3 in round 1): its training is done
            raise KeyboardInterrupt
        return analyse(*args, **kwargs)

    monkeypatch.setattr(study_runner, "_analyse", killed)
    with pytest.raises(KeyboardInterrupt):
        run_study(adaptive(tmp_path))
    assert len(Ledger.load(tmp_path).rounds) == 2 and not (tmp_path / "claims.json").exists()
    monkeypatch.setattr(study_runner, "_analyse", analyse)
    run_study(adaptive(tmp_path, resume=True))
    assert fixed_columns(tmp_path) == fixed_columns(through)
    assert (tmp_path / "claims.json").read_text() == (through / "claims.json").read_text()
    assert [r.jobs for r in Ledger.load(tmp_path).rounds] == [r.jobs for r in Ledger.load(through).rounds]
    # a completed adaptive study resumed again trains nothing and keeps its tables
    before = {p.name: p.stat().st_mtime for p in (tmp_path / "runs").glob("*/*/last.pt")}
    run_study(adaptive(tmp_path, resume=True))
    assert {p.name: p.stat().st_mtime for p in (tmp_path / "runs").glob("*/*/last.pt")} == before
    assert (tmp_path / "claims.json").read_text() == (through / "claims.json").read_text()


def test_the_budget_stops_an_adaptive_study_after_its_pilot(tmp_path, monkeypatch):
    synthetic_claims(monkeypatch)
    run_study(adaptive(tmp_path, budget="1s"))
    ledger = json.loads((tmp_path / LEDGER).read_text())
    assert ledger["stopped"].startswith("budget") and len(ledger["rounds"]) == 1
    assert all(s == [0, 1, 2] for s in seeds_of(tmp_path).values())
    assert not math.isnan(ledger["spent_s"]) and ledger["spent_s"] > 1


def test_a_study_reads_its_data_once(tmp_path, monkeypatch):
    """Inside a study every run gets the dataset loaded before (one read of the files per split and size), and
    outside the cache each call reads again."""
    from spatialvit.data import base, cached_datasets, load_dataset

    reads = []
    real = base._load
    monkeypatch.setattr(base, "_load", lambda *a, **k: reads.append(a[:2]) or real(*a, **k))
    run_study(tiny(tmp_path, models=["resnet_small", "vit_micro_patch4"], seeds=[0, 1]))
    assert sorted(reads) == [("digits", "test"), ("digits", "train")]
    with cached_datasets():
        assert load_dataset("digits", "test", 16) is load_dataset("digits", "test", 16)
    assert load_dataset("digits", "test", 16) is not load_dataset("digits", "test", 16)
