"""Are two study folders the same study? Compares comparison_seeds.json (per model and seed), comparison.json,
differences.json, claims.json, sweep.json, attention_distance.json and association.json row by row (the
wall-clock columns train_time_s, train_img_s, infer_img_s and their _ci, _n left out) and names the models (or
claims) whose rows differ.

    python benchmarks/compare_studies.py STUDY_A STUDY_B

Used to check that a refactor keeps the numbers: the same seed on the same machine must give ``identical``
(docs/architecture.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

TABLES = ("comparison_seeds", "comparison", "differences", "claims", "sweep", "attention_distance", "association")
WALL_CLOCK = ("train_time_s", "train_img_s", "infer_img_s")


def rows(folder: Path, table: str) -> list[dict]:
    """The table's rows without the wall-clock columns; NaN (no spread from one value) as the string "nan", so that
    two NaNs compare equal."""
    path = folder / f"{table}.json"
    if not path.is_file():
        return []
    return [
        {k: "nan" if v != v else v for k, v in r.items() if k.removesuffix("_ci").removesuffix("_n") not in WALL_CLOCK}
        for r in json.loads(path.read_text())
    ]


def _name(row: dict) -> str:
    """The model a row is about (a claim's id for the claims table)."""
    return str(row.get("model", row.get("id", "")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path)
    parser.add_argument("b", type=Path)
    args = parser.parse_args()
    same = True
    for table in TABLES:
        a, b = rows(args.a, table), rows(args.b, table)
        models = list(dict.fromkeys(_name(r) for r in a + b))
        differ = [m for m in models if [r for r in a if _name(r) == m] != [r for r in b if _name(r) == m]]
        same &= not differ
        print(f"{table}.json: {'identical' if not differ else 'differs for ' + ', '.join(differ)}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
