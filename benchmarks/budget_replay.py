"""Replay an adaptive study under another budget: the study's own planner and sequential rule, fed with the per-seed
rows and the measured run times the study recorded. It answers "what would this study have concluded had it been
given B minutes?" for any B up to what it spent, without training anything.

Each replayed round is charged the recorded seconds of its runs: training `workers` at a time (the sum of their
training seconds over the number of workers) plus their analysis one after another — what `round_seconds` estimates
with per-run instead of per-model times. The pilot is charged what the ledger says it took. A round that asks for a
run the study never trained ends the replay (it names the run). Replaying at the study's own budget gives back its
own rounds: the check that the replay is faithful.

    python benchmarks/budget_replay.py docs/data/study_fashion_mnist --budget 150m
    python benchmarks/budget_replay.py docs/data/study_fashion_mnist --budget 205m   # the study's own rounds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spatialvit.report.tables import markdown_table
from spatialvit.study.adaptive import LEDGER, Ledger, claim_state, model_costs, plan_round
from spatialvit.study.claims import CONCLUSIVE
from spatialvit.study.config import StudyConfig
from spatialvit.study.report import shown_claims
from spatialvit.study.runner import derive_tables

Run = tuple[str, int]


def measured_seconds(jobs: list[Run], costs: dict[Run, dict[str, Any]], workers: int) -> float:
    """The recorded wall time of a round of ``jobs``: training ``workers`` at a time, then analysis in turn."""
    train = sum(costs[j]["train_s"] for j in jobs) / min(workers, len(jobs))
    return train + sum(costs[j]["analyse_s"] for j in jobs)


def replay(folder: Path, budget: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str, float]:
    """The rounds (runs, claims served, seconds, conclusive claims after it), the final claims, why the replay
    stopped and the seconds spent, for the study in ``folder`` given ``budget``."""
    config = StudyConfig.from_dict({"budget": budget}, StudyConfig.from_yaml(folder / "study_config.yaml"))
    per_seed = json.loads((folder / "comparison_seeds.json").read_text())
    cost_rows = json.loads((folder / "cost.json").read_text())
    ledger = Ledger.load(folder)
    costs = {(r["model"], int(r["seed"])): r for r in cost_rows}
    recorded = {(r["model"], int(r["seed"])) for r in per_seed}
    have = {(m, int(s)) for m, s in ledger.rounds[0].jobs}
    spent = ledger.spent_s - sum(r.seconds for r in ledger.rounds[1:])  # the pilot, as the ledger charged it
    if config.budget_s < spent:
        raise ValueError(f"the pilot alone took {spent / 60:.1f} min: replay a budget at least that long")
    rounds: list[dict[str, Any]] = []
    while True:
        rows = [r for r in per_seed if (r["model"], int(r["seed"])) in have]
        claims = derive_tables(rows, config.models, config.claim_grid_labels, "sequential")[2]
        conclusive = [c["id"] for c in claims if c["verdict"] in CONCLUSIVE]
        rounds.append({"round": len(rounds), "minutes": round(spent / 60, 1), "conclusive": len(conclusive),
                       "which": ", ".join(conclusive) or "none"})  # fmt: skip
        known = [r for r in cost_rows if (r["model"], int(r["seed"])) in have]
        plan = plan_round(claims, have, config.seed_sequence, model_costs(known), config.workers,
                          config.budget_s - spent)  # fmt: skip
        if plan.stop is not None:
            return rounds, claims, plan.stop, spent
        missing = [j for j in plan.jobs if j not in recorded]
        if missing:
            return rounds, claims, f"the study did not train {missing}", spent
        spent += measured_seconds(plan.jobs, costs, config.workers)
        have |= set(plan.jobs)
        rounds[-1]["next"] = ", ".join(f"{m} {s}" for m, s in plan.jobs)
        rounds[-1]["for"] = ", ".join(plan.claims)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="an adaptive study's folder (or its docs/data/ copy)")
    parser.add_argument("--budget", required=True, help="the budget to replay, e.g. 150m")
    args = parser.parse_args()
    needed = ("study_config.yaml", "comparison_seeds.json", "cost.json", LEDGER)
    missing = [name for name in needed if not (args.folder / name).is_file()]
    if missing:
        parser.error(f"{args.folder} lacks {', '.join(missing)}: give an adaptive study's folder (until_resolved)")
    try:
        rounds, claims, stop, spent = replay(args.folder, args.budget)
    except ValueError as err:
        parser.error(f"--budget {args.budget}: {err}")
    print(markdown_table(rounds) + "\n")
    print(markdown_table(shown_claims(claims, True)) + "\n")
    state = claim_state(claims)
    conclusive = sum(v[1] in CONCLUSIVE for v in state.values())
    print(f"budget {args.budget}: {conclusive} of {len(claims)} claims conclusive after {spent / 60:.1f} min; "
          f"stopped: {stop}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
