"""Result tables: a list of flat dicts (one row each) saved as CSV, JSON and Markdown, and printed."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Row = dict[str, Any]


def columns_of(rows: Sequence[Row]) -> list[str]:
    cols: list[str] = []
    for row in rows:
        cols.extend(k for k in row if k not in cols)
    return cols


def format_value(value: Any, digits: int) -> str:
    """A table cell: floats to ``digits`` decimals, ``None`` empty."""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return "" if value is None else str(value)


def markdown_table(rows: Sequence[Row], digits: int = 4, columns: Sequence[str] | None = None) -> str:
    """A GitHub-flavoured Markdown table of ``rows`` (floats to ``digits`` decimals)."""
    cols = list(columns or columns_of(rows))
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(" --- " for _ in cols) + "|"]
    lines += ["| " + " | ".join(format_value(r.get(c), digits) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def save_table(rows: Sequence[Row], out_dir: str | Path, name: str, digits: int = 4) -> dict[str, Path]:
    """Write ``rows`` to ``out_dir/name.{csv,json,md}``; returns the three paths keyed by extension."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = columns_of(rows)
    paths = {ext: out / f"{name}.{ext}" for ext in ("csv", "json", "md")}
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=cols)
        writer.writeheader()
        writer.writerows(rows)
    paths["json"].write_text(json.dumps(list(rows), indent=2, default=str) + "\n")
    paths["md"].write_text(markdown_table(rows, digits, cols) + "\n")
    return paths
