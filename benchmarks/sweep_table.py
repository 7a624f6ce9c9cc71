"""A study's sensitivity sweep as one table: per model (rows) and setting (columns: clean, each shuffle grid, each
mask grid and ratio), test top-1 averaged over the seeds, with the 95 % CI half-width (Student t) when there are
several seeds — the numbers behind the study's sensitivity.png.

    python benchmarks/sweep_table.py STUDY_DIR
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spatialvit.report.stats import format_ci
from spatialvit.report.tables import markdown_table
from spatialvit.study.report import sweep_means


def setting(row: dict) -> str:
    if row["kind"] == "clean":
        return "clean"
    return f"{row['kind']} {row['grid']}" + (f" @{row['ratio']:g}" if row.get("ratio") is not None else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path, help="a study's output folder (holding sweep.json)")
    args = parser.parse_args()
    path = args.study / "sweep.json"
    if not path.is_file():
        parser.error(f"{path} not found: give the output folder of a `spatialvit study` run (it writes sweep.json)")
    means = sweep_means(json.loads(path.read_text()))
    table: dict[str, dict[str, str]] = {}
    for r in means:
        table.setdefault(r["model"], {"model": r["model"]})[setting(r)] = format_ci(r["acc1"], r["acc1_ci"], 3)
    print(markdown_table(list(table.values())))


if __name__ == "__main__":
    main()
