"""Re-derive a study's tables from its per-seed rows: the comparison (mean ± 95 % CI over seeds) and the claims
(effects, intervals, p-values, Holm, verdicts, seeds for power), printed as the Markdown tables the results docs
show. The input is a folder with the study's `study_config.yaml` and `comparison_seeds.json` — a study's output
folder, or the copies kept in the repository under docs/data/ for every study a doc quotes.

    python benchmarks/study_tables.py docs/data/study_fashion_mnist            # print the tables
    python benchmarks/study_tables.py docs/data/study_fashion_mnist --check    # and compare with claims.json etc.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

from spatialvit.report.tables import markdown_table
from spatialvit.study.config import StudyConfig
from spatialvit.study.report import shown_claims, shown_comparison
from spatialvit.study.runner import derive_tables


def same(a: Any, b: Any) -> bool:
    """Equal, with floats to 1e-9 (relative) and NaN equal to NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def differing(derived: list[dict], saved: list[dict], name: str) -> list[str]:
    """Lines naming every cell of ``derived`` that differs from ``saved``."""
    if len(derived) != len(saved):
        return [f"{name}: {len(derived)} rows derived, {len(saved)} saved"]
    out = []
    for k, (d, s) in enumerate(zip(derived, saved)):
        for col in d:
            if not same(d[col], s.get(col)):
                what = d.get("id") or d.get("model")
                out.append(f"{name} row {k} ({what}) {col}: {d[col]!r} vs saved {s.get(col)!r}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="holds study_config.yaml and comparison_seeds.json")
    parser.add_argument("--check", action="store_true", help="compare with the folder's comparison.json, claims.json")
    args = parser.parse_args()
    paths = {name: args.folder / name for name in ("study_config.yaml", "comparison_seeds.json")}
    for path in paths.values():
        if not path.is_file():
            parser.error(f"{path} not found: give a study's output folder or a docs/data/ copy of one")
    config = StudyConfig.from_yaml(paths["study_config.yaml"])
    per_seed = json.loads(paths["comparison_seeds.json"].read_text())
    rule = "sequential" if config.until_resolved else "fixed"  # an adaptive study's verdicts: the sequential rule
    comparison, _, claims, invalid = derive_tables(per_seed, config.models, config.claim_grid_labels, rule)
    print(markdown_table(shown_comparison(comparison)) + "\n")
    print(markdown_table(shown_claims(claims, config.until_resolved)))
    for reason in invalid.values():
        print(f"\nnot valid: {reason}")
    if not args.check:
        return 0
    saved = {n: json.loads((args.folder / f"{n}.json").read_text()) for n in ("comparison", "claims")}
    problems = differing(comparison, saved["comparison"], "comparison")
    problems += differing(claims, saved["claims"], "claims")
    print("\n" + ("\n".join(problems) if problems else f"check: the tables in {args.folder} are re-derived exactly"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
