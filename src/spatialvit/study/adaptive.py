"""Adaptive studies (``until_resolved``): after the pilot seeds, seeds are added one at a time to the models that
still-open claims need, cheapest first, within a wall-clock budget.

The plan of a round reads the claims as the sequential rule gives them (:func:`~.claims.sequential_outcomes`):
for each claim that is not conclusive, its next seed is the first seed of the study's sequence that one of its
models lacks, and its estimated cost is the seeds it would still need at the observed effect
(:func:`~.claims.sequential_seeds`) times the measured time of a seed of its models. Claims are taken cheapest
first while the round's estimated time fits the budget left. A ledger (``adaptive.json``) records every finished
round, so ``--resume`` continues where the study stopped.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..report.tables import Row
from .claims import CONCLUSIVE, NOT_RESOLVED, SINGLE_SEED

LEDGER = "adaptive.json"
OPEN = (NOT_RESOLVED, SINGLE_SEED)  # verdicts that more seeds can change


@dataclass
class Round:
    """One look: the runs it trained (``[model, seed]``), the claims that asked for them, its wall time, and every
    claim's seeds (``n``) and verdict after it. Round 0 is the pilot."""

    jobs: list[list[Any]]
    claims: list[str]
    seconds: float
    state: dict[str, list[Any]]


@dataclass
class Ledger:
    """What an adaptive study has done: its rounds, the wall time spent (over every session), why it stopped."""

    rounds: list[Round] = field(default_factory=list)
    spent_s: float = 0.0
    stopped: str | None = None

    @classmethod
    def load(cls, out: str | Path) -> Ledger:
        path = Path(out) / LEDGER
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        return cls([Round(**r) for r in data["rounds"]], data["spent_s"], data["stopped"])

    def save(self, out: str | Path) -> Path:
        """Write atomically (a kill leaves the old ledger or the new one)."""
        path = Path(out) / LEDGER
        fd, tmp = tempfile.mkstemp(prefix=f".{LEDGER}.", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=1)
        os.replace(tmp, path)
        return path

    def runs(self) -> list[tuple[str, int]]:
        """Every run of the finished rounds after the pilot, in order."""
        return [(m, int(s)) for r in self.rounds[1:] for m, s in r.jobs]

    def looks(self, claim: str) -> int:
        """How many times the verdict of ``claim`` was looked at with new seeds (the pilot counts as one)."""
        seen = [r.state[claim][0] for r in self.rounds if claim in r.state]
        return len(set(seen))


@dataclass(frozen=True)
class Plan:
    """The next round: the runs to train, the claims they serve, its estimated wall time, or why there is none."""

    jobs: list[tuple[str, int]]
    claims: list[str]
    seconds: float
    stop: str | None = None


def model_costs(cost_rows: Sequence[Row]) -> dict[str, dict[str, float]]:
    """Per model, the mean measured seconds of one run: ``train`` (training, from its epochs) and ``analyse``."""
    out: dict[str, dict[str, float]] = {}
    for model in dict.fromkeys(r["model"] for r in cost_rows):
        mine = [r for r in cost_rows if r["model"] == model]
        out[model] = {k: sum(r[f"{k}_s"] or 0.0 for r in mine) / len(mine) for k in ("train", "analyse")}
    return out


def round_seconds(jobs: Sequence[tuple[str, int]], costs: Mapping[str, Mapping[str, float]], workers: int) -> float:
    """Estimated wall time of training ``jobs`` (``workers`` at once) and analysing them one after another."""
    if not jobs:
        return 0.0
    train = sum(costs[m]["train"] for m, _ in jobs) / min(workers, len(jobs))
    return train + sum(costs[m]["analyse"] for m, _ in jobs)


def claim_models(claim: Row) -> list[str]:
    """The models a claims row compares (from its ``measure``: ``"test_acc1: A − B"``, ``"x: A − A y"``, ``"x: A"``)."""
    names = claim["measure"].split(": ", 1)[1].split(" − ")
    return list(dict.fromkeys(n.split(" ")[0] for n in names))


def seeds_to_go(claim: Row) -> float:
    """Seeds the claim still needs at its observed effect (the nearer of its conclusions; ``inf``: none reachable)."""
    need = [v for v in (claim.get("seeds_effect"), claim.get("seeds_delta")) if v is not None]
    return max(1, min(need) - claim["n"]) if need else math.inf


def plan_round(
    claims: Sequence[Row],
    have: set[tuple[str, int]],
    sequence: Sequence[int],
    costs: Mapping[str, Mapping[str, float]],
    workers: int,
    remaining_s: float | None,
) -> Plan:
    """The next round of an adaptive study: ``claims`` (rows of :func:`~.claims.evaluate_claims`, sequential rule),
    the runs there are (``(model, seed)``), the seed ``sequence`` allowed, measured ``costs`` per model and the
    budget left (``None``: no limit)."""
    open_ = [c for c in claims if c["verdict"] in OPEN]
    if not open_:
        undecided = [c["id"] for c in claims if c["verdict"] not in CONCLUSIVE]
        reason = "every claim is conclusive" if not undecided else "no open claim can gain from more seeds"
        return Plan([], [], 0.0, reason)
    ranked = []
    for claim in open_:
        models = claim_models(claim)
        seed = next((s for s in sequence if any((m, s) not in have for m in models)), None)
        if seed is None:
            continue
        jobs = [(m, seed) for m in models if (m, seed) not in have]
        per_seed = sum(costs[m]["train"] + costs[m]["analyse"] for m in models)
        ranked.append((seeds_to_go(claim) * per_seed, claim["id"], jobs))
    if not ranked:
        return Plan([], [], 0.0, f"max_seeds: every open claim has all {len(sequence)} seeds")
    ranked.sort(key=lambda r: (r[0], r[1]))
    jobs: list[tuple[str, int]] = []
    chosen: list[str] = []
    for _, claim_id, claim_jobs in ranked:
        trial = list(dict.fromkeys([*jobs, *claim_jobs]))
        if remaining_s is not None and round_seconds(trial, costs, workers) > remaining_s:
            continue
        jobs, chosen = trial, [*chosen, claim_id]
    if not jobs:
        cheapest = min(round_seconds(j, costs, workers) for _, _, j in ranked)
        left = f"{remaining_s:.0f} s are left" if remaining_s > 0 else f"the budget was spent {-remaining_s:.0f} s ago"
        return Plan([], [], 0.0, f"budget: the cheapest next seed takes about {cheapest:.0f} s, {left}")
    return Plan(jobs, chosen, round_seconds(jobs, costs, workers))


def claim_state(claims: Sequence[Row]) -> dict[str, list[Any]]:
    """``{claim id: [n, verdict]}`` after a look."""
    return {c["id"]: [c["n"], c["verdict"]] for c in claims}


def still_needed(claim: Row, costs: Mapping[str, Mapping[str, float]]) -> tuple[float | None, float | None]:
    """For an open claim: ``(seeds, seconds)`` it would still need at its observed effect (``None``: not reachable at
    the observed effect), the seconds being the measured time of a seed of its models (training and analysis, one
    after another)."""
    more = seeds_to_go(claim)
    if math.isinf(more):
        return None, None
    per_seed = sum(costs[m]["train"] + costs[m]["analyse"] for m in claim_models(claim))
    return more, more * per_seed
